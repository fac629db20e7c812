"""Workers ride out a store they cannot reach, on virtual time: nothing lost, nothing run twice."""

import asyncio
import logging
from collections import Counter
from typing import Any

import pytest

import conveyor
from conveyor.jobs import App, Jobs, MemoryStore, StoreUnavailable, Worker, WorkerOptions
from conveyor.jobs.outage import MAX_WAIT_S, Outage
from conveyor.testing import VirtualClock

OPTIONS = WorkerOptions(lease_s=30, batch_size=100, flush_interval_s=0.5, grace_s=5)


class Switch:
    """Whether the store is down, shared by every handle that goes through it."""

    def __init__(self) -> None:
        self.down = False
        self.failed = 0


class Flaky:
    """A handle on a store that raises `StoreUnavailable` for every call while switched off.

    `only` limits the outage to the named methods (a store that reads but cannot write).
    """

    def __init__(self, store: MemoryStore, switch: Switch, only: frozenset[str] = frozenset()):
        self._store = store
        self._switch = switch
        self._only = only

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if name.startswith("_") or not asyncio.iscoroutinefunction(attr):
            return attr

        async def call(*args: Any, **kwargs: Any) -> Any:
            if self._switch.down and (not self._only or name in self._only):
                self._switch.failed += 1
                raise StoreUnavailable("'memory'", ConnectionRefusedError("connection refused"))
            return await attr(*args, **kwargs)

        return call


def counting_app(runs: Counter[int], seconds: float) -> App:
    app = App()

    @app.task("work")
    async def work(item: int, ctx: Any) -> int:
        runs[ctx.index] += 1
        await asyncio.sleep(seconds)
        return item

    return app


def outage_lines(caplog: pytest.LogCaptureFixture) -> tuple[int, int]:
    texts = [r.getMessage() for r in caplog.records]
    return (
        sum("the store is unavailable" in t for t in texts),
        sum("the store is back after" in t for t in texts),
    )


def test_backoff_doubles_from_a_tenth_of_a_second_to_the_cap(run):
    """The waits between tries: 0.1 s, doubling, never above MAX_WAIT_S; reset once back."""
    outage = Outage("w")
    exc = StoreUnavailable("x", OSError("refused"))

    async def main() -> None:
        waits = [outage.failed(exc, "testing") for _ in range(9)]
        assert waits == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, MAX_WAIT_S, MAX_WAIT_S, MAX_WAIT_S]
        outage.succeeded()
        assert outage.failed(exc, "testing") == 0.1

    run(main())


@pytest.mark.parametrize("outage_s", [5.0, 60.0])
def test_two_workers_ride_out_a_store_outage_and_run_nothing_twice(
    run, clock: VirtualClock, caplog, outage_s
):
    """An outage mid-job (5 s, and 60 s: longer than the lease) ends no worker.

    Both workers keep running their items, keep the results, retry with a capped backoff,
    log the outage once and its end once, and finish the job when the store is back: every
    item succeeded, each run exactly once (no lease taken from a worker that was only cut
    off like the others).
    """
    shared = MemoryStore()
    switch = Switch()
    runs: Counter[int] = Counter()
    app = counting_app(runs, 1.0)

    async def main() -> None:
        jobs = Jobs(shared, app=app)
        job = await jobs.submit("work", range(400), concurrency=10)
        workers = [Worker(Flaky(shared, switch), app, options=OPTIONS) for _ in range(2)]
        tasks = [asyncio.create_task(w.run(until_idle=True)) for w in workers]
        await asyncio.sleep(5.3)
        switch.down = True
        await asyncio.sleep(outage_s)
        assert not any(t.done() for t in tasks)  # nobody died in the outage
        switch.down = False
        async with asyncio.timeout(300):
            await asyncio.gather(*tasks)
        done = await jobs.get(job.id)
        assert done.status == "completed"
        assert done.counts.succeeded == 400
        assert switch.failed > 0
        assert sum(w.settled for w in workers) == 400
        assert [w.outage.count for w in workers] == [1, 1]

    with caplog.at_level(logging.WARNING, logger="conveyor.jobs"):
        run(main())
    assert sorted(runs) == list(range(400))
    assert max(runs.values()) == 1, {i: n for i, n in runs.items() if n > 1}
    assert outage_lines(caplog) == (2, 2)  # once per worker, and its end once


def test_an_idle_worker_waits_for_a_store_that_is_down_at_start(run, clock: VirtualClock):
    """A worker started before its store waits for it, then runs the job."""
    shared = MemoryStore()
    switch = Switch()
    runs: Counter[int] = Counter()
    app = counting_app(runs, 0.1)

    async def main() -> None:
        job = await Jobs(shared, app=app).submit("work", range(5))
        switch.down = True
        worker = Worker(Flaky(shared, switch), app, options=OPTIONS)
        task = asyncio.create_task(worker.run(until_idle=True))
        await asyncio.sleep(120)
        assert not task.done()
        switch.down = False
        async with asyncio.timeout(60):
            await task
        assert (await shared.get_job(job.id)).counts.succeeded == 5  # type: ignore[union-attr]

    run(main())
    assert runs == Counter(range(5))


def test_claims_pause_while_results_cannot_be_written(run, clock: VirtualClock):
    """With writes failing, a worker claims at most a batch and a claim's worth beyond them.

    What it keeps in memory stays bounded; before, it went on claiming (and buffering) the
    whole job.
    """
    shared = MemoryStore()
    switch = Switch()
    runs: Counter[int] = Counter()
    app = counting_app(runs, 0.1)
    options = WorkerOptions(lease_s=30, batch_size=20, flush_interval_s=0.5)

    async def main() -> None:
        job = await Jobs(shared, app=app).submit("work", range(2000), concurrency=10)
        switch.down = True
        flaky = Flaky(shared, switch, only=frozenset({"record"}))
        worker = Worker(flaky, app, options=options)
        task = asyncio.create_task(worker.run(until_idle=True))
        await asyncio.sleep(100)
        # concurrency 10 claims 12 at a time: at most 20 buffered + 12 claimed in flight
        assert len(runs) <= options.batch_size + 12 + 10
        switch.down = False
        async with asyncio.timeout(600):
            await task
        assert (await shared.get_job(job.id)).counts.succeeded == 2000  # type: ignore[union-attr]

    run(main())
    assert max(runs.values()) == 1


def test_a_result_is_written_as_soon_as_the_writer_is_free(run, clock: VirtualClock):
    """Group commit: a settled item is written at once, not at the next heartbeat."""
    shared = MemoryStore()
    runs: Counter[int] = Counter()
    app = counting_app(runs, 10.0)
    options = WorkerOptions(lease_s=30, batch_size=100, flush_interval_s=3.0)

    async def main() -> None:
        job = await Jobs(shared, app=app).submit("work", [1, 2], concurrency=1)
        task = asyncio.create_task(Worker(shared, app, options=options).run(until_idle=True))
        await asyncio.sleep(10.001)
        first = await shared.get_job(job.id)
        assert first is not None
        assert first.counts.succeeded == 1  # not at the next heartbeat (12 s)
        await task

    run(main())


def test_a_wait_for_redis_leaves_no_step_once_it_is_over(run, clock: VirtualClock):
    """A limiter's "waiting: ..." step goes when the wait is over, even if the job then ends."""
    shared = MemoryStore()
    limiter = conveyor.Limiter("api", concurrency=5)
    app = App(limiters=[limiter])

    @app.task("work")
    async def work(item: int) -> int:
        if item == 0:
            limiter.unavailable = "Redis at redis://127.0.0.1:1/0 is unreachable"  # type: ignore[attr-defined]
            await asyncio.sleep(3)
            limiter.unavailable = None  # type: ignore[attr-defined]
        return item

    async def main() -> None:
        jobs = Jobs(shared, app=app)
        job = await jobs.submit("work", range(3), limiters=["api"])
        worker = Worker(shared, app, options=OPTIONS)
        task = asyncio.create_task(worker.run(until_idle=True))
        await asyncio.sleep(2)
        waiting = await jobs.get(job.id)
        assert (waiting.step or "").startswith("waiting: Redis")
        await task
        done = await jobs.get(job.id)
        assert done.status == "completed"
        assert done.step is None

    run(main())


def test_a_stopping_worker_gives_up_on_a_dead_store_after_its_grace(run, clock, caplog):
    """SIGTERM during an outage: the worker returns after grace_s, saying what it left."""
    shared = MemoryStore()
    switch = Switch()
    runs: Counter[int] = Counter()
    app = counting_app(runs, 1.0)

    async def main() -> None:
        await Jobs(shared, app=app).submit("work", range(50), concurrency=5)
        worker = Worker(Flaky(shared, switch), app, options=OPTIONS)
        task = asyncio.create_task(worker.run())
        await asyncio.sleep(2.5)
        switch.down = True
        await asyncio.sleep(1)
        started = clock.now
        worker.stop()
        async with asyncio.timeout(60):
            await task
        assert clock.now - started <= OPTIONS.grace_s + MAX_WAIT_S + 1

    with caplog.at_level(logging.WARNING, logger="conveyor.jobs"):
        run(main())
    assert any("not written" in r.getMessage() for r in caplog.records)
