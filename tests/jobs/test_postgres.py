"""What only the PostgreSQL store does: migrations, notifications, fenced late answers."""

import asyncio
import json

import pytest

from conveyor.jobs.errors import StoreError
from conveyor.jobs.model import ItemResult, JobOptions, NewJob
from conveyor.jobs.stores.postgres import PostgresStore
from conveyor.jobs.stores.postgres_schema import LATEST_VERSION, queries


def job(job_id: str = "job-1") -> NewJob:
    return NewJob(id=job_id, task="t", options=JobOptions(), created_at=0.0)


def texts(n: int) -> list[str]:
    return [json.dumps(i) for i in range(n)]


def test_named_parameters_become_positional_once_each():
    """A :name used twice is one $n; ``::type`` casts are left alone."""
    q = queries()["set_total"]
    assert q.sql == "UPDATE conveyor_jobs SET total = $1, pending = $1 WHERE id = $2;"
    assert q.names == ("n", "id")
    record = queries()["record_items"]
    assert "$" in record.sql
    assert "::integer[]" in record.sql
    assert "now" in record.names


def test_upgrade_creates_the_schema_then_finds_it_current(pg):
    """The first upgrade goes 0 -> latest; the next one changes nothing."""

    async def main() -> None:
        store = PostgresStore(pg)
        assert await store.upgrade() == (0, LATEST_VERSION)
        assert await store.upgrade() == (LATEST_VERSION, LATEST_VERSION)
        await store.close()

    asyncio.run(main())


def test_processes_starting_at_once_migrate_once(pg):
    """Concurrent upgrades serialise on the advisory lock: one migrates, none fails."""

    async def main() -> None:
        stores = [PostgresStore(pg) for _ in range(4)]
        results = await asyncio.gather(*(s.upgrade() for s in stores))
        assert sorted(r[1] for r in results) == [LATEST_VERSION] * 4
        for s in stores:
            await s.close()

    asyncio.run(main())


def test_a_database_from_a_newer_conveyor_is_refused_untouched(pg):
    """A schema version above ours raises StoreError naming the fix, and writes nothing."""

    async def main() -> None:
        store = PostgresStore(pg)
        await store.upgrade()
        conn = await store._connect_one()
        await conn.execute("INSERT INTO conveyor_schema (version) VALUES (999)")
        await conn.close()
        newer = PostgresStore(pg)
        with pytest.raises(StoreError, match="newer Conveyor"):
            await newer.create_job(job(), texts(1))
        conn = await store._connect_one()
        assert await conn.fetchval("SELECT count(*) FROM conveyor_jobs") == 0
        await conn.close()
        await newer.close()
        await store.close()

    asyncio.run(main())


def test_a_store_told_not_to_migrate_refuses_an_old_schema(pg):
    """migrate=False refuses a missing schema and says to run `conveyor db upgrade`."""

    async def main() -> None:
        store = PostgresStore(pg, migrate=False)
        with pytest.raises(StoreError, match="conveyor db upgrade"):
            await store.get_job("x")
        await store.close()

    asyncio.run(main())


def test_work_and_job_changes_are_notified_to_other_handles(pg):
    """A new job wakes listeners of 'work'; a progress update notifies 'jobs' with the id."""

    async def main() -> None:
        submitter, listener = PostgresStore(pg), PostgresStore(pg)
        work: asyncio.Queue[str] = asyncio.Queue()
        changes: asyncio.Queue[str] = asyncio.Queue()
        await listener.listen("work", work.put_nowait)
        await listener.listen("jobs", changes.put_nowait)
        await submitter.create_job(job("j1"), texts(3))
        assert await asyncio.wait_for(work.get(), 5) == "j1"
        while not changes.empty():
            changes.get_nowait()
        await submitter.set_progress("j1", inflight=0.5, step="matching")
        assert await asyncio.wait_for(changes.get(), 5) == "j1"
        # Claiming and settling changes the job but brings no new work.
        await submitter.claim("w", limit=3, lease_s=30)
        await submitter.record(
            "w", [ItemResult("j1", i, "succeeded", 1, 0.1, "1") for i in range(3)]
        )
        await asyncio.sleep(0.05)  # real I/O: let any (wrong) notification arrive
        assert work.empty()
        await submitter.close()
        await listener.close()

    asyncio.run(main())


def test_work_is_notified_when_the_last_worker_on_a_job_lets_it_go(pg):
    """A job with pending items that no worker holds any more wakes idle workers.

    A budgeted job can then be taken over at once. A holder settling some of its items, and
    keeping others, wakes nobody.
    """

    async def main() -> None:
        store, listener = PostgresStore(pg), PostgresStore(pg)
        work: asyncio.Queue[str] = asyncio.Queue()
        changes: asyncio.Queue[str] = asyncio.Queue()
        await store.create_job(job("j5"), texts(6))
        await listener.listen("work", work.put_nowait)
        await listener.listen("jobs", changes.put_nowait)
        await store.claim("w1", limit=3, lease_s=30)
        await store.record("w1", [ItemResult("j5", 0, "succeeded", 1, 0.1, "1")])
        await store.record("w1", [ItemResult("j5", 1, "succeeded", 1, 0.1, "1")])
        # Notifications arrive in commit order: once the third change is seen, a wrong 'work'
        # notification from these transactions would have arrived before it.
        for _ in range(3):
            assert await asyncio.wait_for(changes.get(), 5) == "j5"
        assert work.empty()
        await store.record("w1", [ItemResult("j5", 2, "succeeded", 1, 0.1, "1")])
        assert await asyncio.wait_for(work.get(), 5) == "j5"
        await store.close()
        await listener.close()

    asyncio.run(main())


def test_a_late_answer_after_a_takeover_neither_overwrites_nor_duplicates(pg):
    """A worker whose lease was re-queued and re-claimed by another writes nothing."""
    clock = [1000.0]

    async def main() -> None:
        store = PostgresStore(pg, clock=lambda: clock[0])
        await store.create_job(job(), texts(2))
        await store.claim("slow", limit=2, lease_s=5)
        clock[0] += 6
        assert await store.requeue_expired() == 2
        await store.claim("fast", limit=2, lease_s=5)
        assert (
            await store.record("fast", [ItemResult("job-1", 0, "succeeded", 1, 0.1, '"fast"')]) == 1
        )
        late = [ItemResult("job-1", i, "succeeded", 1, 0.1, '"slow"') for i in range(2)]
        assert await store.record("slow", late) == 0
        items = await store.items("job-1")
        assert [(i.state, i.result) for i in items] == [("succeeded", "fast"), ("running", None)]
        j = await store.get_job("job-1")
        assert j is not None
        assert (j.counts.succeeded, j.counts.running) == (1, 1)
        await store.close()

    asyncio.run(main())


def test_open_store_accepts_postgresql_urls():
    """``postgresql://`` and ``postgres://`` open a PostgresStore, schema taken from the URL."""
    from conveyor.jobs.client import open_store

    store = open_store("postgresql://u@h/db?schema=abc&sslmode=disable")
    assert isinstance(store, PostgresStore)
    assert store.schema == "abc"
    assert store._dsn == "postgresql://u@h/db?sslmode=disable"
    assert isinstance(open_store("postgres://u@h/db"), PostgresStore)
    with pytest.raises(StoreError, match="plain identifier"):
        PostgresStore("postgresql://u@h/db?schema=a;drop")


def test_the_refusal_of_a_newer_database_names_it_without_a_password(pg, capsys):
    """`conveyor db upgrade` on a newer schema names the database, its passwords hidden."""
    from conveyor.cli import main

    password = "hunter2-store-password"  # noqa: S105 - a made-up test value
    url = pg.replace("postgres@", f"postgres:{password}@", 1) + f"&password={password}"

    async def newer() -> None:
        store = PostgresStore(pg)
        await store.upgrade()
        conn = await store._connect_one()
        await conn.execute("INSERT INTO conveyor_schema (version) VALUES (999)")
        await conn.close()
        await store.close()

    asyncio.run(newer())
    assert main(["db", "upgrade", "--store", url]) == 2
    err = capsys.readouterr().err
    assert "newer than this Conveyor" in err
    assert "the database of postgresql://***@127.0.0.1:5432/test?password=***" in err
    assert password not in err
