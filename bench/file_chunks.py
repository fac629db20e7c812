"""Files in the job store: upload and read speed, and memory, by chunk size, SQLite and PostgreSQL.

A file is stored as chunks, a row and a transaction each (`conveyor.jobs.store.FileStore`). The
chunk size trades memory (an upload holds a chunk or two) against the cost per row. For each
store and chunk size (256 KiB, 1 MiB, 4 MiB), ``--mib`` MiB of JSONL (default 200) are
written through `FileManager.upload` in 64 KiB pieces (what a server hands over), then read
back a chunk at a time. On PostgreSQL the chunks are kept uncompressed (``STORAGE EXTERNAL``);
the row ``1 MiB pglz`` is the default (compressed) storage, for comparison, with the table's
size on disk. Memory is the peak of what Python allocates (tracemalloc) during the upload.
Best of ``--rounds`` interleaved rounds (a shared machine is noisy).

``python bench/file_chunks.py [--mib 200] [--rounds 2] [--no-postgres]``; PostgreSQL is
``$CONVEYOR_TEST_POSTGRES`` (default ``postgresql://postgres@127.0.0.1:5432/test``), in a schema
of its own, dropped at the end. A last row posts the same file to the service in-process
(``POST /v1/files`` on a SQLite store: the line checks included) and reports its memory.
"""

# ruff: noqa: E402 - the imports follow taking this folder off sys.path (see below)
from __future__ import annotations

import os
import sys

# Run as a script, this folder comes first on sys.path, and its http.py would shadow the
# standard library's `http` (which httpx imports). Take the folder off the path.
_HERE = os.path.dirname(os.path.abspath(__file__))  # noqa: PTH100, PTH120 - before any import
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]  # noqa: PTH100

import argparse
import asyncio
import json
import random
import string
import tempfile
import time
import tracemalloc
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from conveyor.jobs import MemoryStore, SqliteStore
from conveyor.jobs.stores.postgres import PostgresStore
from conveyor.service import ServiceConfig, create_app
from conveyor.service.config import Limits

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from conveyor.jobs.store import Store

POSTGRES = os.environ.get("CONVEYOR_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
KiB, MiB = 1 << 10, 1 << 20


def _piece() -> bytes:
    """64 KiB of batch-input-like lines: requests of words drawn at random (seeded).

    Not one letter repeated: text compresses about as a real prompt does, so the pglz row's
    size and cost mean something.
    """
    rng = random.Random(0)
    words = [
        "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(2, 9)))
        for _ in range(2000)
    ]
    lines, size, n = [], 0, 0
    while size < 64 * KiB:
        text = " ".join(rng.choice(words) for _ in range(150))
        line = json.dumps(
            {
                "custom_id": f"r{n}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {"model": "m", "messages": [{"role": "user", "content": text}]},
            }
        )
        lines.append(line.encode() + b"\n")
        size += len(lines[-1])
        n += 1
    return b"".join(lines)


PIECE = _piece()
LINE_COUNT = PIECE.count(b"\n")


@dataclass
class Row:
    """One measurement."""

    store: str
    chunk: str
    write_s: float
    read_s: float
    peak: int
    disk: int | None = None


async def _one(store: Store, chunk_bytes: int, size: int) -> tuple[float, float, int]:
    files: Any = store.files  # type: ignore[attr-defined]
    files.chunk_bytes = chunk_bytes
    file_id = f"file-{uuid.uuid4().hex}"
    tracemalloc.start()
    t0 = time.perf_counter()
    upload = await files.upload("bench", file_id, created_at=0.0)
    written = 0
    while written < size:
        await upload.write(PIECE)
        written += len(PIECE)
    stored = await upload.publish(items=written // len(PIECE) * LINE_COUNT)
    t1 = time.perf_counter()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    read = 0
    async for chunk in files.chunks(stored):
        read += len(chunk)
    t2 = time.perf_counter()
    assert read == written, (read, written)
    await files.delete_file("bench", file_id)
    return t1 - t0, t2 - t1, peak


async def _pg(url: str, *statements: str) -> int:
    """Run `statements` on the bench's schema; the chunk table's size in bytes after."""
    store = PostgresStore(url)
    conn = await store._connect_one()  # noqa: SLF001 - a bench reaches into its store
    try:
        for statement in statements:
            await conn.execute(statement)
        size = await conn.fetchval("SELECT pg_total_relation_size('conveyor_file_chunks')")
    finally:
        await conn.close()
        await store.close()
    return int(size)


def _storage(mode: str) -> str:
    return f"ALTER TABLE conveyor_file_chunks ALTER COLUMN data SET STORAGE {mode}"


async def _service(size: int, folder: Path) -> tuple[float, int]:
    """POST the file to the service in-process (SQLite store); seconds and traced peak."""
    store = SqliteStore(folder / "service.db")
    cfg = ServiceConfig(store="memory:", keys_file=None, files_dir=folder / "files",
                        limits=Limits(max_file_bytes=1 << 40))  # fmt: skip
    asgi = create_app(cfg, store=store, worker=False)

    async def body() -> AsyncIterator[bytes]:
        sent = 0
        while sent < size:
            yield PIECE
            sent += len(PIECE)

    async with asgi.router.lifespan_context(asgi):
        transport = httpx.ASGITransport(app=asgi)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
            tracemalloc.start()
            t0 = time.perf_counter()
            answer = await c.post("/v1/files", content=body(), timeout=600)
            seconds = time.perf_counter() - t0
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
    assert answer.status_code == 201, answer.text
    return seconds, peak


async def main(size_mib: int, rounds: int, postgres: bool) -> list[Row]:
    size = size_mib * MiB
    folder = Path(tempfile.mkdtemp(prefix="conveyor-bench-files-"))
    schema = f"conveyor_bench_{uuid.uuid4().hex[:10]}"
    pg_url = f"{POSTGRES}?schema={schema}"
    best: dict[tuple[str, str], Row] = {}
    chunks = {"256 KiB": 256 * KiB, "1 MiB": MiB, "4 MiB": 4 * MiB}
    try:
        for _ in range(rounds):
            for label, chunk in chunks.items():
                kinds: list[tuple[str, Store]] = [
                    ("memory", MemoryStore()),
                    ("sqlite", SqliteStore(folder / "bench.db")),
                ]
                if postgres:
                    kinds.append(("postgres", PostgresStore(pg_url)))
                for kind, store in kinds:
                    w, r, peak = await _one(store, chunk, size)
                    await store.close()
                    _keep(best, Row(kind, label, w, r, peak))
            if postgres:
                await _pg(pg_url, _storage("EXTENDED"))
                store = PostgresStore(pg_url)
                w, r, peak = await _one(store, MiB, size)
                await store.close()
                _keep(best, Row("postgres", "1 MiB pglz", w, r, peak))
                await _pg(pg_url, _storage("EXTERNAL"))
        if postgres:
            best[("postgres", "1 MiB")].disk = await _disk(pg_url, size, "EXTERNAL")
            best[("postgres", "1 MiB pglz")].disk = await _disk(pg_url, size, "EXTENDED")
        seconds, peak = await _service(size, folder)
        best[("service", "1 MiB")] = Row("service (sqlite)", "1 MiB", seconds, 0.0, peak)
    finally:
        if postgres:
            await _drop(schema)
    return list(best.values())


async def _disk(url: str, size: int, mode: str) -> int:
    """The chunk table's size on disk holding one file of `size` stored in `mode`."""
    await _pg(url, "TRUNCATE conveyor_file_chunks", _storage(mode))
    store = PostgresStore(url)
    files: Any = store.files
    upload = await files.upload("bench", f"file-{uuid.uuid4().hex}", created_at=0.0)
    written = 0
    while written < size:
        await upload.write(PIECE)
        written += len(PIECE)
    await upload.publish(items=0)
    await store.close()
    return await _pg(url, "CHECKPOINT")


async def _drop(schema: str) -> None:
    import asyncpg  # noqa: PLC0415 - only with PostgreSQL

    conn = await asyncpg.connect(POSTGRES)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


def _keep(best: dict[tuple[str, str], Row], row: Row) -> None:
    key = (row.store, row.chunk)
    if key not in best or row.write_s < best[key].write_s:
        best[key] = row


def _table(rows: list[Row], size_mib: int) -> str:
    out = [
        f"{size_mib} MiB of JSONL, written in 64 KiB pieces, then read back a chunk at a time",
        "",
        "| store | chunk | write MiB/s | read MiB/s | peak traced (upload) | chunk table |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        read = f"{size_mib / r.read_s:,.0f}" if r.read_s else "-"
        disk = f"{r.disk / MiB:,.1f} MiB" if r.disk is not None else "-"
        out.append(
            f"| {r.store} | {r.chunk} | {size_mib / r.write_s:,.0f} | {read} |"
            f" {r.peak / MiB:.2f} MiB | {disk} |"
        )
    return "\n".join(out)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=200, help="the file's size in MiB")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (best kept)")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite and memory only")
    args = parser.parse_args()
    found = asyncio.run(main(args.mib, args.rounds, not args.no_postgres))
    print(_table(found, args.mib))
