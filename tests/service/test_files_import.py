"""``conveyor db upgrade --files-dir``: an earlier version's files folder moves into the store.

The folder is written here as the earlier service wrote it (a folder per tenant named by a
hash; ``file-<id>.json`` and ``.jsonl``, ``batch_*.json``, ``msgbatch_*.json``), beside a
store at the earlier schema version (SQLite 4, PostgreSQL 3). The import runs in the
transaction of the migration that makes the new tables: one that fails leaves the store at
its old version, and the folder is never touched (but for a note, once imported).
"""

import asyncio
import hashlib
import json
import sqlite3
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx
import pytest

from conveyor.cli import main
from conveyor.jobs.stores import postgres_schema, sqlite_schema
from conveyor.jobs.stores.file_rules import FileRules
from conveyor.jobs.stores.postgres import PostgresStore
from conveyor.service import ServiceConfig, create_app
from conveyor.service.batches import BatchRecord
from conveyor.service.files_import import MARK, tenant_folder, warn_unimported
from conveyor.service.keys import add_key
from conveyor.service.message_batch_records import MessageBatchRecord

from .conftest import make_app

FILE_A = "file-" + "a" * 32
FILE_B = "file-" + "b" * 32
HALF = "file-" + "c" * 32


def legacy_folder(root: Path) -> dict[str, Any]:
    """A files folder as the earlier service left it: two tenants, files, batches, debris."""
    acme, globex = root / tenant_folder("acme"), root / tenant_folder("globex")
    acme.mkdir(parents=True)
    globex.mkdir()
    data = b"".join(json.dumps({"n": i}).encode() + b"\n" for i in range(3000))  # 3 chunks
    meta = {"id": FILE_A, "bytes": len(data), "items": 3000, "created_at": 1_700_000_000.5}
    (acme / f"{FILE_A}.json").write_text(json.dumps(meta))
    (acme / f"{FILE_A}.jsonl").write_bytes(data)
    batch_input = b'{"custom_id": "x", "method": "POST", "url": "/v1/embeddings", "body": {}}\n'
    meta_b = {"id": FILE_B, "bytes": len(batch_input), "items": 1, "created_at": 1_700_000_001.0}
    meta_b |= {"filename": "in.jsonl", "purpose": "batch"}
    (globex / f"{FILE_B}.json").write_text(json.dumps(meta_b))
    (globex / f"{FILE_B}.jsonl").write_bytes(batch_input)
    (globex / f"{HALF}.json").write_text(json.dumps(meta_b | {"id": HALF}))  # never finished
    (globex / f".{HALF}.part").write_bytes(b'{"half":')
    record = BatchRecord.new(
        endpoint="/v1/embeddings", input_file_id=FILE_B, window="24h", metadata=None, now=5.0
    )
    record.status, record.total, record.times["failed_at"] = "failed", 1, 5.0
    (globex / f"{record.id}.json").write_text(json.dumps(asdict(record)))
    message = MessageBatchRecord.new(now=7.0, total=1)
    message.ended_at = 7.0
    (acme / f"{message.id}.json").write_text(message.to_json())
    (acme / "batch_broken.json").write_text("{not json")
    return {"data": data, "batch": record.id, "message_batch": message.id}


def fingerprint(root: Path) -> dict[str, str]:
    """Every file under `root` and the hash of its bytes."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def old_sqlite(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A SQLite store at schema version 4, before files and batches were in it."""
    earlier = sqlite_schema.migrations()[:4]
    with monkeypatch.context() as m:
        m.setattr(sqlite_schema, "migrations", lambda: earlier)
        conn = sqlite_schema.connect(path)
        sqlite_schema.migrate(conn)
        conn.close()
    assert version_of(path) == 4


def version_of(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


def tables_of(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        conn.close()


async def served(url: str, tmp_path: Path, keys: dict[str, str]) -> dict[str, Any]:
    """What a service on the upgraded store answers each tenant."""
    cfg = ServiceConfig(store=url, keys_file=tmp_path / "keys.json", files_dir=tmp_path / "x")
    asgi = create_app(cfg, app=make_app(), worker=False)
    out: dict[str, Any] = {}
    async with asgi.router.lifespan_context(asgi):
        transport = httpx.ASGITransport(app=asgi)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
            for tenant, key in keys.items():
                headers = {"Authorization": f"Bearer {key}"}
                files = (await c.get("/v1/files", headers=headers)).json()["data"]
                out[tenant] = {
                    "files": {f["id"]: f for f in files},
                    "contents": {
                        f["id"]: (
                            await c.get(f"/v1/files/{f['id']}/content", headers=headers)
                        ).content
                        for f in files
                    },
                    "batches": (await c.get("/v1/batches", headers=headers)).json()["data"],
                    "message_batches": (
                        await c.get("/v1/messages/batches", headers=headers)
                    ).json()["data"],
                }
    return out


def test_db_upgrade_imports_a_files_folder_into_a_sqlite_store(tmp_path, monkeypatch, capsys):
    """Files, batches and message batches of each tenant are served from the store after."""
    db, folder = tmp_path / "jobs.db", tmp_path / "files"
    old_sqlite(db, monkeypatch)
    made = legacy_folder(folder)
    keys = {t: add_key(tmp_path / "keys.json", tenant=t)[1] for t in ("acme", "globex")}
    before = fingerprint(folder)
    assert warn_unimported(folder)
    argv = ["db", "upgrade", "--store", f"sqlite:///{db}", "--files-dir", str(folder)]
    assert main([*argv, "--keys-file", str(tmp_path / "keys.json")]) == 0
    out = capsys.readouterr().out
    assert f"schema version 4 -> {sqlite_schema.LATEST_VERSION}" in out
    assert "2 file(s), 1 batch(es), 1 message batch(es) imported" in out
    assert "1 unreadable record(s) passed over" in out
    after = fingerprint(folder)
    assert after.pop(MARK) is not None  # the one thing written into the folder
    assert after == before
    assert not warn_unimported(folder)
    seen = asyncio.run(served(f"sqlite:///{db}", tmp_path, keys))
    acme, globex = seen["acme"], seen["globex"]
    assert list(acme["files"]) == [FILE_A]
    assert acme["contents"][FILE_A] == made["data"]
    # A job input (no purpose of OpenAI's) shows as user_data in OpenAI's file object.
    assert (acme["files"][FILE_A]["bytes"], acme["files"][FILE_A]["purpose"]) == (
        len(made["data"]),
        "user_data",
    )
    assert list(globex["files"]) == [FILE_B]  # the half upload is not imported
    assert globex["files"][FILE_B]["filename"] == "in.jsonl"
    assert [b["id"] for b in globex["batches"]] == [made["batch"]]
    assert globex["batches"][0]["status"] == "failed"
    assert [b["id"] for b in acme["message_batches"]] == [made["message_batch"]]
    assert acme["batches"] == globex["message_batches"] == []
    # Again: nothing new, nothing doubled.
    assert main([*argv, "--keys-file", str(tmp_path / "keys.json")]) == 0
    assert "0 file(s), 0 batch(es), 0 message batch(es) imported; 4 already" in (
        capsys.readouterr().out
    )


def test_a_failure_mid_import_leaves_the_store_at_its_old_version_and_the_folder_intact(
    tmp_path, monkeypatch, capsys
):
    """The import fails after its first file: version 4, no new table, the folder as it was."""
    db, folder = tmp_path / "jobs.db", tmp_path / "files"
    old_sqlite(db, monkeypatch)
    legacy_folder(folder)
    add_key(tmp_path / "keys.json", tenant="acme")
    add_key(tmp_path / "keys.json", tenant="globex")
    before, tables = fingerprint(folder), tables_of(db)
    real = FileRules.add_batch

    async def failing(self: FileRules, c: Any, row: Any) -> bool:
        raise OSError("the disk went away mid-import")

    monkeypatch.setattr(FileRules, "add_batch", failing)
    argv = ["db", "upgrade", "--store", f"sqlite:///{db}", "--files-dir", str(folder)]
    # A temporary failure (75): nothing was changed, and running it again is the fix.
    assert main([*argv, "--keys-file", str(tmp_path / "keys.json")]) == 75
    err = capsys.readouterr().err
    assert "the disk went away mid-import" in err
    assert "nothing was changed" in err
    assert version_of(db) == 4
    assert tables_of(db) == tables
    assert fingerprint(folder) == before  # not even the note
    monkeypatch.setattr(FileRules, "add_batch", real)
    assert main([*argv, "--keys-file", str(tmp_path / "keys.json")]) == 0
    assert version_of(db) == sqlite_schema.LATEST_VERSION


def test_a_folder_of_a_tenant_nobody_names_refuses_the_import_untouched(
    tmp_path, monkeypatch, capsys
):
    """Without the keys file naming globex, its folder is unknown: refused, nothing written."""
    db, folder = tmp_path / "jobs.db", tmp_path / "files"
    old_sqlite(db, monkeypatch)
    legacy_folder(folder)
    add_key(tmp_path / "keys.json", tenant="acme")
    before = fingerprint(folder)
    argv = ["db", "upgrade", "--store", f"sqlite:///{db}", "--files-dir", str(folder)]
    assert main([*argv, "--keys-file", str(tmp_path / "keys.json")]) == 2
    err = capsys.readouterr().err
    assert tenant_folder("globex") in err
    assert "--keys-file" in err
    assert "nothing was imported" in err
    assert version_of(db) == 4
    assert fingerprint(folder) == before


def test_tenants_of_the_stores_jobs_are_found_without_a_keys_file(tmp_path, monkeypatch):
    """A tenant that has a job in the store needs no keys file to be recognised."""
    db, folder = tmp_path / "jobs.db", tmp_path / "files"
    old_sqlite(db, monkeypatch)
    legacy_folder(folder)
    conn = sqlite3.connect(db)
    for n, tenant in enumerate(("acme", "globex")):
        conn.execute(
            "INSERT INTO jobs (id, task, options, status, created_at, tenant)"
            " VALUES (?, 'echo', '{}', 'completed', 1.0, ?)",
            (f"job-{n}", tenant),
        )
    conn.commit()
    conn.close()
    assert main(["db", "upgrade", "--store", f"sqlite:///{db}", "--files-dir", str(folder)]) == 0
    assert version_of(db) == sqlite_schema.LATEST_VERSION


def test_db_upgrade_imports_into_postgresql_or_leaves_it_at_its_old_version(
    pg, tmp_path, monkeypatch, capsys
):
    """PostgreSQL at version 3: a failed import leaves it at 3; the next one brings it to 4."""
    folder = tmp_path / "files"
    made = legacy_folder(folder)
    keys = {t: add_key(tmp_path / "keys.json", tenant=t)[1] for t in ("acme", "globex")}
    earlier = postgres_schema.migrations()[:3]

    async def old() -> None:
        with monkeypatch.context() as m:
            m.setattr(postgres_schema, "migrations", lambda: earlier)
            m.setattr(postgres_schema, "LATEST_VERSION", 3)
            store = PostgresStore(pg)
            assert await store.upgrade() == (0, 3)
            await store.close()

    async def version() -> int:
        store = PostgresStore(pg, migrate=False)
        conn = await store._connect_one()
        try:
            return await postgres_schema.current_version(conn)
        finally:
            await conn.close()

    asyncio.run(old())
    before = fingerprint(folder)
    real = FileRules.add_whole
    calls = 0

    async def fails_second(self: FileRules, c: Any, file: Any, chunks: Any) -> bool:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise OSError("the network went away mid-import")
        return await real(self, c, file, chunks)

    monkeypatch.setattr(FileRules, "add_whole", fails_second)
    argv = ["db", "upgrade", "--store", pg, "--files-dir", str(folder)]
    argv += ["--keys-file", str(tmp_path / "keys.json")]
    assert main(argv) == 75  # temporary: nothing changed, run it again
    assert "went away mid-import" in capsys.readouterr().err
    assert asyncio.run(version()) == 3
    assert fingerprint(folder) == before
    monkeypatch.setattr(FileRules, "add_whole", real)
    assert main(argv) == 0
    assert asyncio.run(version()) == postgres_schema.LATEST_VERSION
    seen = asyncio.run(served(pg, tmp_path, keys))
    assert seen["acme"]["contents"][FILE_A] == made["data"]
    assert [b["id"] for b in seen["globex"]["batches"]] == [made["batch"]]
