"""`InFlight` counts the attempts running now, per job, from the engine's events."""

import asyncio
from types import SimpleNamespace
from typing import Any

from conveyor.engine.events import ItemFinished, ItemRetrying, ItemStarted
from conveyor.engine.report import Outcome
from conveyor.jobs import App, Jobs, MemoryStore, Worker, WorkerOptions
from conveyor.service.inflight import InFlight
from conveyor.testing import VirtualClock


def _item(index: int) -> SimpleNamespace:
    return SimpleNamespace(index=index)


def _finished(index: int, state: str = "succeeded") -> ItemFinished:
    outcome: Outcome[Any, Any] = Outcome(index, _item(index), state, None, None, 1, 0.0, 0.0)  # type: ignore[arg-type]
    return ItemFinished(outcome)


def test_attempts_are_counted_from_start_to_retry_or_end_per_job() -> None:
    inflight = InFlight()
    a, b = SimpleNamespace(id="a"), SimpleNamespace(id="b")
    for index in (0, 1, 2):
        inflight.event(a, ItemStarted(index, _item(index), 1))  # type: ignore[arg-type]
    inflight.event(b, ItemStarted(0, _item(0), 1))  # type: ignore[arg-type]
    assert (inflight.of("a"), inflight.of("b"), inflight.of("c")) == (3, 1, 0)
    inflight.event(a, ItemRetrying(1, _item(1), 1, 0.5, RuntimeError("x"), "transient"))  # type: ignore[arg-type]
    inflight.event(a, _finished(0))  # type: ignore[arg-type]
    assert inflight.of("a") == 1
    # Cancelled while it waited for its retry: its attempt had ended already.
    inflight.event(a, _finished(1, "cancelled"))  # type: ignore[arg-type]
    assert inflight.of("a") == 1
    inflight.event(a, _finished(2))  # type: ignore[arg-type]
    inflight.event(b, _finished(0))  # type: ignore[arg-type]
    assert (inflight.of("a"), inflight.of("b")) == (0, 0)


def test_a_worker_s_attempts_in_flight_never_pass_the_job_s_concurrency(clock: VirtualClock):
    """Read while a job runs (virtual time): as many as its concurrency, then none."""
    app = App()
    seen: list[int] = []
    retried: list[int] = []
    inflight = InFlight()

    @app.task("slow")
    async def slow(item: int) -> int:
        await asyncio.sleep(1.0)
        if item % 4 == 0 and item not in retried:
            retried.append(item)
            raise ConnectionError("once")  # retried
        return item

    async def main() -> int:
        store = MemoryStore()
        job = await Jobs(store, app=app).submit("slow", range(12), concurrency=3, attempts=2)
        worker = Worker(store, app, observers=[inflight])
        run = asyncio.create_task(worker.run(until_idle=True))
        while not run.done():
            seen.append(inflight.of(job.id))
            await asyncio.sleep(0.25)
        await run
        return inflight.of(job.id)

    assert clock.run(main()) == 0
    assert max(seen) == 3  # the job's concurrency, never more
    assert sorted(retried) == [0, 4, 8]  # three attempts failed, and were retried


def test_attempts_cut_off_by_a_stopping_worker_are_no_longer_in_flight(clock: VirtualClock):
    """A worker stopped mid-attempt, past its grace period: its items go back, none in flight."""
    app = App()
    inflight = InFlight()

    @app.task("endless")
    async def endless(item: int) -> int:
        await asyncio.sleep(3600.0)
        return item

    async def main() -> tuple[int, int, int]:
        store = MemoryStore()
        jobs = Jobs(store, app=app)
        job = await jobs.submit("endless", range(6), concurrency=4)
        worker = Worker(store, app, options=WorkerOptions(grace_s=1.0), observers=[inflight])
        run = asyncio.create_task(worker.run())
        await asyncio.sleep(10.0)
        during = inflight.of(job.id)
        worker.stop()
        await run
        counts = (await jobs.get(job.id)).counts
        return during, inflight.of(job.id), counts.pending

    assert clock.run(main()) == (4, 0, 6)


def test_one_item_claimed_twice_in_a_run_counts_both_attempts() -> None:
    """Its two attempts are two calls in flight: each ends on its own (the engine's index)."""
    inflight = InFlight()
    job = SimpleNamespace(id="a")
    inflight.event(job, ItemStarted(0, _item(7), 1))  # type: ignore[arg-type]
    inflight.event(job, ItemStarted(1, _item(7), 1))  # type: ignore[arg-type]
    assert inflight.of("a") == 2
    outcome: Outcome[Any, Any] = Outcome(0, _item(7), "succeeded", None, None, 1, 0.0, 0.0)
    inflight.event(job, ItemFinished(outcome))  # type: ignore[arg-type]
    assert inflight.of("a") == 1


def test_an_item_requeued_under_a_running_worker_is_counted_per_call(clock: VirtualClock):
    """Requeued under the worker (its lease taken for lapsed), an item may run twice at once.

    Its run's next claim takes the item again (and the lease back): what is counted in flight
    is what is being called, read all along.
    """
    app = App()
    store = MemoryStore()
    inflight = InFlight()
    calls: dict[int, int] = {}
    worker = Worker(store, app, options=WorkerOptions(claim_size=1), observers=[inflight])
    released = False

    @app.task("t")
    async def t(item: int) -> int:
        nonlocal released
        calls[item] = calls.get(item, 0) + 1
        try:
            if item == 0 and not released:
                released = True
                # Another process takes this worker's lease for lapsed: its items go back.
                await store.release(worker.id)
            await asyncio.sleep(10.0)
            return item
        finally:
            calls[item] -= 1

    async def main() -> list[tuple[int, int]]:
        job = await Jobs(store, app=app).submit("t", range(4), concurrency=2)
        run = asyncio.create_task(worker.run(until_idle=True))
        seen: list[tuple[int, int]] = []
        while not run.done():
            seen.append((sum(calls.values()), inflight.of(job.id)))
            await asyncio.sleep(0.25)
        await run
        return seen

    seen = clock.run(main())
    assert all(called == counted for called, counted in seen)
