"""`InFlight` counts the attempts running now, per job, from the engine's events."""

import asyncio
from types import SimpleNamespace
from typing import Any

from conveyor.engine.events import ItemFinished, ItemRetrying, ItemStarted
from conveyor.engine.report import Outcome
from conveyor.jobs import App, Jobs, MemoryStore, Worker
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
