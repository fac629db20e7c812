"""Regressions from the jobs audit: claims sized by concurrency, attempts counted at start."""

import asyncio
import json
import math
from collections.abc import Sequence
from typing import Any

import pytest

from conveyor.jobs import App, Jobs, MemoryStore, SqliteStore, Worker, WorkerOptions
from conveyor.jobs.errors import InvalidJob
from conveyor.jobs.model import ItemResult
from conveyor.testing import VirtualClock

OPTIONS = WorkerOptions(lease_s=10, flush_interval_s=0.5, poll_interval_s=1)


def gated_app(gate: asyncio.Event, started: list[int], seen: dict[int, int] | None = None) -> App:
    app = App()

    @app.task("wait")
    async def wait(item: Any, ctx: Any) -> Any:
        started.append(ctx.index)
        if seen is not None:
            seen[ctx.index] = ctx.attempt
        await gate.wait()
        return item

    return app


def test_a_worker_claims_about_the_jobs_concurrency_so_another_worker_gets_items(run):
    """At concurrency 4 a worker holds 5 items (4 + prefetch), not 500; a second worker shares."""
    store = MemoryStore()
    gate = asyncio.Event()
    started: list[int] = []
    app = gated_app(gate, started)

    async def main() -> None:
        jobs = Jobs(store, app=app)
        job = await jobs.submit("wait", range(100), concurrency=4)
        a = asyncio.create_task(Worker(store, app, options=OPTIONS, worker_id="a").run())
        await asyncio.sleep(1)  # virtual time: the worker claims and starts what it can
        assert len(started) == 4
        assert (await jobs.get(job.id)).counts.running == 5
        b = Worker(store, app, options=OPTIONS, worker_id="b")
        b_task = asyncio.create_task(b.run(until_idle=True))
        await asyncio.sleep(1)
        assert len(started) == 8
        assert (await jobs.get(job.id)).counts.running == 10
        gate.set()
        await b_task
        done = await jobs.get(job.id)
        assert (done.status, done.counts.succeeded) == ("completed", 100)
        a.cancel()
        await asyncio.gather(a, return_exceptions=True)

    run(main())


class DyingStore(MemoryStore):
    """A memory store in which a worker can die: its writes are lost from then on."""

    def __init__(self) -> None:
        super().__init__()
        self.dead: set[str] = set()
        self.requeuing = False

    async def record(self, worker_id: str, results: Sequence[ItemResult]) -> int:
        return 0 if worker_id in self.dead else await super().record(worker_id, results)

    async def release(self, worker_id: str, items: Any = None) -> int:
        if worker_id in self.dead and not self.requeuing:
            return 0
        return await super().release(worker_id, items)

    async def requeue_expired(self) -> int:
        # Another worker's takeover releases the dead one's items: that must go through.
        self.requeuing = True
        try:
            return await super().requeue_expired()
        finally:
            self.requeuing = False

    async def renew(self, worker_id: str, *, lease_s: float) -> bool:
        return False if worker_id in self.dead else await super().renew(worker_id, lease_s=lease_s)


def test_after_a_crash_only_started_items_count_an_attempt(run, clock: VirtualClock):
    """Claimed items that never started keep attempts 0; started ones count 1 (ctx.attempt too)."""
    store = DyingStore()
    gate = asyncio.Event()
    started: list[int] = []
    seen: dict[int, int] = {}
    app = gated_app(gate, started, seen)
    options = WorkerOptions(lease_s=10, flush_interval_s=0.5, poll_interval_s=1, claim_size=5)

    async def main() -> None:
        jobs = Jobs(store, app=app)
        job = await jobs.submit("wait", range(6), concurrency=2)
        dying = asyncio.create_task(Worker(store, app, options=options, worker_id="a").run())
        await asyncio.sleep(2)  # items 0 and 1 run; 2, 3, 4 are claimed and wait
        assert sorted(started) == [0, 1]
        store.dead.add("a")  # kill -9: nothing it writes lands any more
        dying.cancel()
        await asyncio.gather(dying, return_exceptions=True)
        gate.set()
        seen.clear()
        await Worker(store, app, options=options, worker_id="b").run(until_idle=True)
        assert seen == {0: 1, 1: 1, 2: 0, 3: 0, 4: 0, 5: 0}
        attempts = {i.index: i.attempts async for i in jobs.results(job.id)}
        assert attempts == {0: 2, 1: 2, 2: 1, 3: 1, 4: 1, 5: 1}
        assert clock.now >= 10

    run(main())


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, [1, {"x": math.nan}]])
def test_nan_and_infinity_are_refused_at_submit_naming_the_item(run, bad):
    """NaN / Infinity are not JSON: submit raises InvalidJob naming the item, writes nothing."""
    store = MemoryStore()

    async def main() -> None:
        with pytest.raises(InvalidJob, match="item 1 "):
            await Jobs(store).submit("t", [1, bad])
        assert await store.list_jobs() == []

    run(main())


def test_a_lone_surrogate_is_refused_at_submit_naming_the_item(run):
    """A string with a lone surrogate cannot be stored as UTF-8: InvalidJob naming the item."""
    store = MemoryStore()

    async def main() -> None:
        with pytest.raises(InvalidJob, match="item 2 "):
            await Jobs(store).submit("t", ["a", {"k": "b"}, {"k": "\ud800"}])
        assert await store.list_jobs() == []

    run(main())


def test_a_result_that_is_not_finite_json_fails_its_item(run):
    """A task returning NaN fails that item (ValueError) instead of storing a broken result."""
    store = MemoryStore()
    app = App()

    @app.task("ratio")
    async def ratio(x: float) -> float:
        return math.nan if x == 0 else 1 / x

    async def main() -> None:
        jobs = Jobs(store, app=app)
        job = await jobs.submit("ratio", [0, 2])
        await Worker(store, app, options=OPTIONS).run(until_idle=True)
        items = [i async for i in jobs.results(job.id)]
        assert [(i.state, i.error_type) for i in items] == [
            ("failed", "ValueError"),
            ("succeeded", None),
        ]
        for item in items:
            json.dumps(item.to_dict(), allow_nan=False)

    run(main())


def test_the_summary_counts_time_while_running_and_only_items_that_ran():
    """Running: duration is now - start; throughput is over succeeded + failed, not cancelled."""
    from conveyor.jobs.model import Counts, Job, JobOptions

    running = Job(
        id="j",
        task="t",
        options=JobOptions(),
        status="running",
        counts=Counts(total=100, pending=50, succeeded=40, failed=10),
        started_at=1000.0,
    )
    s = running.summary_at(1010.0)
    assert (s.duration_s, s.throughput_per_s) == (10.0, 5.0)
    failed_at_once = Job(
        id="j",
        task="t",
        options=JobOptions(),
        status="failed",
        counts=Counts(total=1000, cancelled=1000),
        started_at=1000.0,
        finished_at=1000.001,
    )
    assert failed_at_once.summary_at(2000.0).throughput_per_s == 0.0


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_a_retry_does_not_count_the_idle_time_before_it_in_the_duration(run, wall, tmp_path, kind):
    """A job retried an hour after it finished: its duration is the time it ran, not +1 h."""
    store = (
        MemoryStore(clock=wall) if kind == "memory" else SqliteStore(tmp_path / "j.db", clock=wall)
    )

    async def main() -> None:
        jobs = Jobs(store)
        job = await jobs.submit("t", [1, 2])
        await store.claim("w", limit=2, lease_s=10)
        wall.advance(5)
        await store.record(
            "w",
            [
                ItemResult(job.id, 0, "succeeded", 1, 0.1, "1"),
                ItemResult(job.id, 1, "failed", 1, 0.1, error_type="E", error_message="x"),
            ],
        )
        wall.advance(3600)
        await store.retry_failed(job.id)
        await store.claim("w", limit=2, lease_s=10)
        wall.advance(5)
        await store.record("w", [ItemResult(job.id, 1, "succeeded", 1, 0.1, "2")])
        done = await jobs.get(job.id)
        assert done.summary.duration_s == pytest.approx(10.0)
        await jobs.close()

    run(main())
