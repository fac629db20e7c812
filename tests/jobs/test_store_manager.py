"""The one job store over its connectors: the rules run only named queries both dialects have."""

import json
import re
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest

from conveyor.jobs.file_model import BatchRow, FileItems, StoredFile
from conveyor.jobs.model import ItemResult, JobOptions, NewJob
from conveyor.jobs.stores.connector import Connection, Row, run_now
from conveyor.jobs.stores.file_rules import FileRules
from conveyor.jobs.stores.manager import JobStore
from conveyor.jobs.stores.memory import MemoryConnector
from conveyor.jobs.stores.postgres_schema import queries as postgres_queries
from conveyor.jobs.stores.sqlite_schema import queries as sqlite_queries

T = TypeVar("T")
SQL = Path(__file__).parents[2] / "src" / "conveyor" / "jobs" / "sql"
#: The names one dialect has and the other not, each for a reason of its own: SQLite runs a
#: job's items and a batch of results one row a statement (`executemany`), PostgreSQL a batch
#: a statement (COPY, `unnest`), and only PostgreSQL's store answers `any_active` in one query.
ONLY_SQLITE = {"insert_item", "record_item"}
ONLY_POSTGRES = {"record_items", "any_active"}


class Recording:
    """A `Connection` that notes each query's name, then runs it on `inner`."""

    def __init__(self, inner: Connection, names: set[str]) -> None:
        self.inner = inner
        self.names = names

    async def execute(self, name: str, /, **params: Any) -> int:
        self.names.add(name)
        return await self.inner.execute(name, **params)

    async def fetch(self, name: str, /, **params: Any) -> list[Row]:
        self.names.add(name)
        return await self.inner.fetch(name, **params)

    async def fetchrow(self, name: str, /, **params: Any) -> Row | None:
        self.names.add(name)
        return await self.inner.fetchrow(name, **params)

    async def fetchval(self, name: str, /, **params: Any) -> Any:
        self.names.add(name)
        return await self.inner.fetchval(name, **params)

    async def insert_items(self, job_id: str, items: Iterable[str] | AsyncIterator[str]) -> int:
        return await self.inner.insert_items(job_id, items)

    async def record_items(
        self, job_id: str, worker: str, now: float | None, batch: Sequence[ItemResult]
    ) -> list[ItemResult]:
        return await self.inner.record_items(job_id, worker, now, batch)


class RecordingConnector(MemoryConnector):
    """The memory connector, its connections wrapped in `Recording`."""

    def __init__(self, clock: Callable[[], float]) -> None:
        super().__init__(clock=clock)
        self.names: set[str] = set()

    async def transaction(self, work: Callable[[Connection], Coroutine[Any, Any, T]]) -> T:
        return await super().transaction(lambda c: work(Recording(c, self.names)))

    async def read(self, work: Callable[[Connection], Coroutine[Any, Any, T]]) -> T:
        return await super().read(lambda c: work(Recording(c, self.names)))


def new_job(job_id: str, *, key: str | None = None, budget: float | None = None) -> NewJob:
    options = JobOptions(max_cost_usd=budget)
    return NewJob(id=job_id, task="t", options=options, created_at=1.0, idempotency_key=key)


def texts(n: int) -> list[str]:
    return [json.dumps(i) for i in range(n)]


def test_both_dialects_name_the_same_queries():
    """sql/sqlite and sql/postgres hold one vocabulary, but for the bulk writes' own forms."""
    sqlite, postgres = set(sqlite_queries()), set(postgres_queries())
    assert sqlite - postgres == ONLY_SQLITE
    assert postgres - sqlite == ONLY_POSTGRES


def test_each_dialect_is_one_folder_with_its_queries_and_migrations():
    """The SQL lives in one folder per dialect: queries.sql and numbered migrations."""
    for dialect in ("sqlite", "postgres"):
        folder = SQL / dialect
        assert (folder / "queries.sql").is_file()
        names = sorted(p.name for p in (folder / "migrations").iterdir())
        assert names, dialect
        assert all(re.fullmatch(r"\d{4}_\w+\.sql", n) for n in names), names
    assert sorted(p.name for p in SQL.iterdir() if p.suffix == ".sql") == []


def test_the_rules_run_only_queries_that_both_dialects_have(run):  # noqa: PLR0915 - one scenario
    """Every store call, run by the one job store, names only queries found in both files."""
    wall = [1_700_000_000.0]
    connector = RecordingConnector(clock=lambda: wall[0])
    store = JobStore(connector)

    async def main() -> None:
        await store.create_job(new_job("a", key="k"), texts(4), max_active_jobs=5)
        await store.create_job(new_job("a2", key="k"), texts(4), max_active_jobs=5)  # replay
        await store.create_job(new_job("b", budget=1.0), texts(2))
        claim = await store.claim("w1", limit=3, lease_s=10, tasks=["t"])
        assert claim is not None
        assert claim.job.id == "a"
        assert await store.claim("w2", limit=1, lease_s=10, job_id="a") is not None
        budgeted = await store.claim("w1", limit=1, lease_s=10, job_id="b")
        assert budgeted is not None
        assert await store.claim("w2", limit=1, lease_s=10, job_id="b") is None  # one worker
        assert await store.started("w1", [("a", 0), ("a", 1)]) == 2
        assert await store.renew("w1", lease_s=10)
        results = [
            ItemResult("a", 0, "succeeded", 0, 0.5, "1"),
            ItemResult("a", 1, "failed", 0, 0.25, error_type="E", error_message="boom"),
        ]
        assert await store.record("w1", results) == 2
        assert await store.release("w1", [("a", 2)]) == 1
        await store.set_progress("a", inflight=0.5, step="working")
        wall[0] += 60
        assert await store.requeue_expired() == 2  # w1's item of b, w2's item of a
        await store.request_cancel("b")
        await store.release("w2")
        while (claim := await store.claim("w3", limit=10, lease_s=10, job_id="a")) is not None:
            done = [ItemResult("a", i.index, "succeeded", 1, 0.1, "1") for i in claim.items]
            await store.record("w3", done)
        job = await store.get_job("a")
        assert job is not None
        assert job.status == "completed"
        assert await store.retry_failed("a", max_active_jobs=5) == 1
        await store.set_budget("a", 2.0)
        await store.fail_job("a", "gave up")
        assert [j.id for j in await store.list_jobs(limit=5)] == ["b", "a"]
        assert len(await store.items("a", state="cancelled")) == 1
        assert len(await store.items("a", after=1)) == 2
        # A job whose only item fails ends failed, its error read from the item.
        await store.create_job(new_job("c"), texts(1))
        assert await store.claim("w4", limit=1, lease_s=10, job_id="c") is not None
        assert [w.running for w in await store.worker_leases() if w.worker_id == "w4"] == [{"c": 1}]
        failure = ItemResult(
            "c", 0, "failed", 1, 0.1, error_type="E", error_message="boom", finished_at=7.9
        )
        await store.record("w4", [failure])
        assert (await store.get_job("c")).error == "E: boom"  # type: ignore[union-attr]
        assert await store.rate_counts("c") == [(7, 1)]  # the second it ended in, not now
        seen = await store.overview()  # every status counted, in one query
        assert (seen.jobs["failed"], seen.jobs["cancelled"], seen.jobs["queued"]) == (2, 1, 0)
        await files_and_batches(store, connector, wall)
        await store.close()

    run(main())
    used = connector.names
    assert used <= set(postgres_queries()), used - set(postgres_queries())
    assert used <= set(sqlite_queries()), used - set(sqlite_queries())
    # The scenario reaches (nearly) the whole vocabulary: a rule left unexercised here would
    # need a test of its own.
    unused = set(sqlite_queries()) - used - ONLY_SQLITE
    assert unused <= {"try_lock_budgeted"}, unused


async def files_and_batches(store: JobStore, connector: MemoryConnector, wall: list[float]) -> None:
    """Every call of the store's files and batch records, once."""
    files = store.files
    files.chunk_bytes = 2
    upload = await files.upload("default", "file-1", created_at=1.0, filename="in.jsonl")
    await upload.write(b"1\n2\n")
    await upload.publish(items=2)
    stored = await files.file("default", "file-1")
    assert stored is not None
    assert b"".join([c async for c in files.chunks(stored)]) == b"1\n2\n"
    assert [f.id for f in await files.files("default", purpose="")] == ["file-1"]
    made = await store.create_job(
        new_job("from-file"), FileItems("file-1", lambda _n, line: line.decode())
    )
    assert made.counts.total == 2
    gone = await files.upload("default", "file-2", created_at=1.0)
    await gone.write(b"xyz")
    await gone.discard()
    await files.upload("default", "file-3", created_at=1.0)
    wall[0] += 60
    assert await files.sweep_uploads(idle_s=30) == 1
    assert await files.delete_file("default", "file-1")
    rules = FileRules()
    whole = StoredFile("file-4", "default", "", "", 1, 1, 1, 1.0)
    assert await connector.transaction(lambda c: rules.add_whole(c, whole, [b"1"]))
    assert await connector.read(rules.known_tenants) == ["default"]
    row = BatchRow("b1", "default", "openai", "from-file", 1.0, 2.0, False, "{}")
    await files.add_batch(row)
    assert await files.batch("default", "openai", "b1") == row
    assert await files.batches("default", "openai") == [row]
    assert await files.due_batches("openai", due=5.0) == ([row], None)
    ended = BatchRow("b1", "default", "openai", "from-file", 1.0, 2.0, True, "{}")
    assert await files.change_batch("default", "openai", "b1", lambda _: ended, cancel_job=True)
    assert await files.delete_batch("default", "openai", "b1")


def test_work_on_a_sqlite_connection_that_suspends_is_refused():
    """`run_now` runs work to its end at once; work that awaits something else is an error."""

    class Later:
        def __await__(self) -> Any:
            yield None

    async def waits() -> int:
        await Later()
        return 1

    async def returns() -> int:
        return 7

    assert run_now(returns()) == 7
    with pytest.raises(RuntimeError, match="must not suspend"):
        run_now(waits())
