"""A run whose lease was taken for lapsed claims nothing more: no item is called twice at once.

Another process finds a worker's lease lapsed (a long pause, a partition), deletes it and puts
the worker's items back to pending. Before the run claims more it renews its lease: finding
it gone, it stops, records nothing, and the worker's next run claims afresh.
"""

import asyncio

from conveyor.jobs import App, Jobs, MemoryStore, Worker, WorkerOptions
from conveyor.testing import VirtualClock


def test_a_run_that_lost_its_lease_claims_nothing_more_and_no_item_runs_twice_at_once(
    clock: VirtualClock,
) -> None:
    app = App()
    store = MemoryStore()
    worker = Worker(store, app, options=WorkerOptions(claim_size=1))
    running: dict[int, int] = {}
    most_at_once: dict[int, int] = {}
    released = False

    @app.task("t")
    async def t(item: int) -> int:
        nonlocal released
        running[item] = running.get(item, 0) + 1
        most_at_once[item] = max(most_at_once.get(item, 0), running[item])
        try:
            if item == 0 and not released:
                released = True
                await store.release(worker.id)  # its lease taken for lapsed: items go back
            await asyncio.sleep(10.0)
            return item
        finally:
            running[item] -= 1

    async def main() -> tuple[str, int]:
        jobs = Jobs(store, app=app)
        job = await jobs.submit("t", range(4), concurrency=2)
        await worker.run(until_idle=True)
        done = await jobs.get(job.id)
        return done.status, done.counts.succeeded

    assert clock.run(main()) == ("completed", 4)
    assert released
    assert max(most_at_once.values()) == 1, most_at_once
