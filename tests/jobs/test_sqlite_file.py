"""The SQLite store's file: versioned schema, refusal of foreign or newer files, durability."""

import sqlite3
from pathlib import Path

import pytest

from conveyor.jobs.errors import StoreError
from conveyor.jobs.model import Job, JobOptions, NewJob
from conveyor.jobs.stores.sqlite import SqliteStore
from conveyor.jobs.stores.sqlite_schema import APPLICATION_ID, LATEST_VERSION, migrations

from .conftest import Wall


def _pragma(path: Path, name: str) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute(f"PRAGMA {name}").fetchone()[0])
    finally:
        conn.close()


def test_a_new_file_is_marked_as_a_conveyor_store_at_the_latest_version(tmp_path, run):
    """A fresh store carries Conveyor's application id and the newest schema version, in WAL."""
    path = tmp_path / "jobs.db"

    async def main() -> None:
        store = SqliteStore(path)
        await store.close()

    run(main())
    assert _pragma(path, "application_id") == APPLICATION_ID
    assert _pragma(path, "user_version") == LATEST_VERSION == len(migrations())
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_a_file_that_is_not_sqlite_is_refused_untouched(tmp_path):
    """A text file is refused with StoreError, and its bytes are left as they were."""
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are my notes, not a database\n" * 200)
    before = path.read_bytes()
    with pytest.raises(StoreError, match="not a Conveyor job store"):
        SqliteStore(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.db"]


def test_another_applications_database_is_refused_untouched(tmp_path):
    """A SQLite database of another application is refused, and not modified."""
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO users (name) VALUES ('ada')")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match="another application"):
        SqliteStore(path)
    assert path.read_bytes() == before


def test_a_store_from_a_newer_conveyor_is_refused_untouched(tmp_path, run):
    """A store whose schema is newer than this Conveyor knows is refused, naming the upgrade."""
    path = tmp_path / "jobs.db"

    async def main() -> None:
        await SqliteStore(path).close()

    run(main())
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {LATEST_VERSION + 1}")
    conn.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match=r"newer Conveyor.*upgrade"):
        SqliteStore(path)
    assert path.read_bytes() == before


def test_jobs_survive_closing_and_reopening_the_file(tmp_path, run):
    """What was committed is there when the file is opened again (the migration is a no-op)."""
    path = tmp_path / "jobs.db"
    wall = Wall()

    async def write() -> None:
        store = SqliteStore(path, clock=wall)
        job = NewJob(id="j", task="t", options=JobOptions(attempts=2), created_at=1.0)
        await store.create_job(job, ['"a"', '"b"'])
        await store.claim("w", limit=1, lease_s=5)
        await store.close()

    async def read() -> Job | None:
        store = SqliteStore(path, clock=wall)
        job = await store.get_job("j")
        await store.close()
        return job

    run(write())
    job = run(read())
    assert job is not None
    assert (job.options.attempts, job.counts.running, job.counts.pending) == (2, 1, 1)
    assert _pragma(path, "user_version") == LATEST_VERSION


def test_a_version_1_file_is_upgraded_with_its_jobs_kept(tmp_path, run):
    """A store written at schema version 1 opens at the latest, its jobs in tenant 'default'."""
    path = tmp_path / "jobs.db"
    conn = sqlite3.connect(path, isolation_level=None)
    version, script = migrations()[0]
    assert version == 1
    conn.executescript(script)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 1")
    conn.execute(
        "INSERT INTO jobs (id, task, options, status, total, pending, created_at)"
        """ VALUES ('old', 't', '{"concurrency":2}', 'queued', 1, 1, 5.0)"""
    )
    conn.execute("INSERT INTO items (job_id, idx, input) VALUES ('old', 0, '\"x\"')")
    conn.close()

    async def main() -> tuple[Job | None, Job | None]:
        store = SqliteStore(path, clock=Wall())
        old = await store.get_job("old")
        await store.claim("w", limit=1, lease_s=5)
        after = await store.get_job("old")
        await store.close()
        return old, after

    old, after = run(main())
    assert _pragma(path, "user_version") == LATEST_VERSION >= 2
    assert old is not None
    assert (old.tenant, old.idempotency_key, old.options.concurrency) == ("default", None, 2)
    assert after is not None
    assert after.counts.running == 1
    assert after.version > old.version
