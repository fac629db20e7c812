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


def test_the_wait_between_tries_doubles_from_a_tenth_of_a_second_to_the_cap(run, clock):
    """One caller retrying after each wait: 0.1, 0.1, 0.2, 0.4 ... 5 s; again 0.1 once back."""
    outage = Outage("w")
    exc = StoreUnavailable("x", OSError("refused"))

    async def main() -> None:
        waits = []
        for _ in range(9):
            waits.append(outage.failed(exc, "testing"))
            await asyncio.sleep(waits[-1])
        assert waits == pytest.approx([0.1, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, MAX_WAIT_S, MAX_WAIT_S])
        outage.succeeded()
        assert outage.failed(exc, "testing") == 0.1

    run(main())


def test_callers_failing_together_do_not_shorten_each_others_waits(run, clock):
    """Three tasks of one worker failing at once all wait as long as one would."""
    outage = Outage("w")
    exc = StoreUnavailable("x", OSError("refused"))

    async def main() -> None:
        outage.failed(exc, "testing")
        await asyncio.sleep(0.4)
        assert [outage.failed(exc, "testing") for _ in range(3)] == pytest.approx([0.4] * 3)

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
    """A limiter's "waiting: ..." step goes when the wait is over: the end's step replaces it."""
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
        assert done.step == "Completed: 3 of 3 items succeeded"

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


class Wrapped:
    """A handle on a store with some of its methods replaced (`over`: name -> function)."""

    def __init__(self, store: Any, **over: Any) -> None:
        self._store = store
        self._over = over

    def __getattr__(self, name: str) -> Any:
        return self._over.get(name) or getattr(self._store, name)


def test_items_of_a_claim_whose_answer_was_lost_go_back_at_once(run, clock: VirtualClock):
    """A claim that committed but raised (its answer lost) leaves no item running.

    Before, its items stayed running under the worker, unknown to it, until its lease
    lapsed (and for as long as it worked on other jobs): the job did not complete.
    """
    shared = MemoryStore()
    runs: Counter[int] = Counter()
    app = counting_app(runs, 0.5)
    calls = 0

    async def claim(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        got = await shared.claim(*args, **kwargs)
        if calls == 3:  # mid-job: committed, then the connection dropped
            raise StoreUnavailable("'memory'", TimeoutError("no answer"))
        return got

    async def main() -> None:
        job = await Jobs(shared, app=app).submit("work", range(20), concurrency=2)
        worker = Worker(Wrapped(shared, claim=claim), app, options=OPTIONS)
        started = clock.now
        async with asyncio.timeout(300):
            await worker.run(until_idle=True)
        assert calls > 3
        assert (await shared.get_job(job.id)).counts.succeeded == 20  # type: ignore[union-attr]
        assert clock.now - started < OPTIONS.lease_s  # not when the lease lapsed

    run(main())
    assert runs == Counter(range(20))


def test_an_attempt_is_counted_when_its_start_could_not_be_reported(run, clock: VirtualClock):
    """An item that finished while its start failed to be reported still counts its attempt.

    Before, its result (written first) carried one attempt less, and the start reported
    after it no longer counted: the item showed 0 attempts.
    """
    shared = MemoryStore()
    runs: Counter[int] = Counter()
    app = counting_app(runs, 1.0)
    failed = False

    async def started(*args: Any, **kwargs: Any) -> Any:
        nonlocal failed
        if not failed:
            failed = True
            await asyncio.sleep(0.7)  # the item finishes meanwhile (at 1 s)
            raise StoreUnavailable("'memory'", ConnectionResetError("reset"))
        return await shared.started(*args, **kwargs)

    async def main() -> None:
        job = await Jobs(shared, app=app).submit("work", [7], concurrency=1)
        worker = Worker(Wrapped(shared, started=started), app, options=OPTIONS)
        async with asyncio.timeout(300):
            await worker.run(until_idle=True)
        assert failed
        [item] = await shared.items(job.id)
        assert item.state == "succeeded"
        assert item.attempts == 1

    run(main())


def test_writes_failing_with_a_bug_neither_lose_the_lease_nor_flood_the_log(
    run, clock: VirtualClock, caplog
):
    """Results that cannot be written (an unexpected error) leave the lease renewed.

    No other worker takes the items (each runs once), and the error is logged once with
    its traceback, not at every retry. Before, the heartbeat wrote before it renewed, so
    the lease lapsed and the items ran again elsewhere; the log had a traceback per retry.
    """
    shared = MemoryStore()
    runs: Counter[int] = Counter()
    app = counting_app(runs, 1.0)
    broken = True

    async def record(*args: Any, **kwargs: Any) -> Any:
        if broken:
            raise RuntimeError("a bug in the store")
        return await shared.record(*args, **kwargs)

    async def main() -> None:
        nonlocal broken
        job = await Jobs(shared, app=app).submit("work", range(5), concurrency=5)
        first = Worker(Wrapped(shared, record=record), app, options=OPTIONS)
        task = asyncio.create_task(first.run(until_idle=True))
        await asyncio.sleep(2)
        other = asyncio.create_task(Worker(shared, app, options=OPTIONS).run(until_idle=True))
        await asyncio.sleep(3 * OPTIONS.lease_s)
        broken = False
        async with asyncio.timeout(300):
            await asyncio.gather(task, other)
        assert (await shared.get_job(job.id)).counts.succeeded == 5  # type: ignore[union-attr]

    with caplog.at_level(logging.DEBUG, logger="conveyor.jobs"):
        run(main())
    assert runs == Counter(range(5))
    logged = [r for r in caplog.records if r.levelno >= logging.WARNING and r.exc_info]
    assert len(logged) == 1, [r.getMessage() for r in logged]


def test_a_nul_in_a_tasks_error_or_step_is_kept_by_every_store(kit, run):
    """A task's error message or step with a NUL is stored (as U+FFFD) and the job ends.

    Before, PostgreSQL refused the write ("invalid byte sequence ... 0x00") and the error
    ended the worker.
    """
    app = App()

    @app.task("work")
    async def work(item: int, ctx: Any) -> int:
        ctx.progress(50, step="half\x00way")
        raise ValueError("bad\x00byte")

    async def main() -> None:
        store = kit.open()
        jobs = Jobs(store, app=app)
        job = await jobs.submit("work", range(3), attempts=1)
        options = WorkerOptions(lease_s=3, flush_interval_s=0.05, grace_s=1)
        async with asyncio.timeout(60):
            await Worker(store, app, options=options).run(until_idle=True)
        done = await jobs.get(job.id)
        assert done.status == "failed"  # every item failed
        assert done.counts.failed == 3
        assert done.error == "all 3 items failed; the first, item 0: ValueError: bad\ufffdbyte"
        items = await store.items(job.id)
        assert {i.error_message for i in items} == {"bad\ufffdbyte"}

    run(main())
