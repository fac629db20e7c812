"""The store's gauges, read at scrape time: jobs by status, queue depth, and an outage said."""

import asyncio
import logging

import pytest

from conveyor.jobs import App, Jobs, MemoryStore, SqliteStore, Store, StoreUnavailable
from conveyor.jobs.overview import StoreOverview, read_overview
from conveyor.metrics import Metrics

from .kit import Scrape


def _app() -> App:
    app = App()

    @app.task("noop")
    async def noop(x):
        return x

    return app


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_jobs_by_status_and_the_queue_depth_are_read_at_scrape_time(run, tmp_path, kind):
    """Two queued jobs of 4 and 6 items, one cancelled: queued 2, depth 10, oldest aged 30 s."""
    store: Store = MemoryStore() if kind == "memory" else SqliteStore(tmp_path / "jobs.db")
    app = _app()
    metrics = Metrics(app=app, store=store)

    async def main() -> bytes:
        jobs = Jobs(store, app=app)
        await jobs.submit("noop", range(4))
        await asyncio.sleep(20.0)
        await jobs.submit("noop", range(6))
        gone = await jobs.submit("noop", range(3))
        await jobs.cancel(gone.id)
        await asyncio.sleep(10.0)
        try:
            return (await metrics.render())[0]
        finally:
            await store.close()

    scrape = Scrape(run(main()))
    assert scrape.value("conveyor_store_up") == 1
    assert scrape.value("conveyor_jobs", status="queued") == 2
    assert scrape.value("conveyor_jobs", status="running") == 0
    # One query of the store's own counts every status, the finished ones too.
    assert scrape.value("conveyor_jobs", status="cancelled") == 1
    assert scrape.value("conveyor_queue_depth") == 10
    assert scrape.value("conveyor_items_running") == 0
    assert scrape.value("conveyor_oldest_queued_job_age_seconds") == pytest.approx(30.0)
    assert scrape.value("conveyor_store_overview_capped") == 0


def test_postgresql_is_read_through_the_same_interface(pg):
    """PostgreSQL (real time: a network driver): the same figures, without waiting for any."""
    from conveyor.jobs.stores.postgres import PostgresStore

    store, app = PostgresStore(pg), _app()
    metrics = Metrics(app=app, store=store)

    async def main() -> bytes:
        try:
            jobs = Jobs(store, app=app)
            await jobs.submit("noop", range(4))
            await jobs.submit("noop", range(6))
            gone = await jobs.submit("noop", range(3))
            await jobs.cancel(gone.id)
            return (await metrics.render())[0]
        finally:
            await store.close()

    scrape = Scrape(asyncio.run(main()))
    assert scrape.value("conveyor_store_up") == 1
    assert scrape.value("conveyor_jobs", status="queued") == 2
    assert scrape.value("conveyor_jobs", status="cancelled") == 1
    assert scrape.value("conveyor_queue_depth") == 10
    assert scrape.value("conveyor_oldest_queued_job_age_seconds") >= 0


class DownStore(MemoryStore):
    """A store whose reads fail as an unreachable database's do."""

    async def overview(self):
        raise StoreUnavailable("the job store", ConnectionRefusedError("refused"))


class SilentStore(MemoryStore):
    """A store that never answers (a network that drops the packets)."""

    async def overview(self):
        await asyncio.Event().wait()


def test_a_store_outage_makes_the_scrape_say_store_up_0(run, caplog):
    """An unreachable store: the scrape answers, with conveyor_store_up 0 and no store figures."""
    metrics = Metrics(app=_app(), store=DownStore())

    async def main() -> list[bytes]:
        return [(await metrics.render())[0] for _ in range(3)]

    with caplog.at_level(logging.WARNING, logger="conveyor.metrics"):
        bodies = run(main())
    scrape = Scrape(bodies[-1])
    assert scrape.value("conveyor_store_up") == 0
    assert scrape.samples("conveyor_jobs") == []
    assert scrape.samples("conveyor_queue_depth") == []
    assert "conveyor_jobs" in scrape.names  # the family stays, without samples
    # Said once for the outage, not once per scrape.
    assert sum("could not be read" in r.getMessage() for r in caplog.records) == 1


def test_a_silent_store_is_waited_for_only_store_timeout_s(run, clock):
    """A store that never answers: the scrape gives up after store_timeout_s, store_up 0."""
    metrics = Metrics(app=_app(), store=SilentStore(), store_timeout_s=2.0)

    async def main() -> bytes:
        return (await metrics.render())[0]

    scrape = Scrape(run(main()))
    assert scrape.value("conveyor_store_up") == 0
    assert scrape.value("conveyor_store_read_seconds") == pytest.approx(2.0)
    assert clock.now == pytest.approx(2.0)


class OverviewStore(MemoryStore):
    """A store that answers the overview itself, in one query: counted."""

    def __init__(self) -> None:
        super().__init__()
        self.overviews = 0

    async def overview(self) -> StoreOverview:
        self.overviews += 1
        return StoreOverview(jobs={"queued": 3, "completed": 40, "failed": 2}, pending=7, running=1)

    async def list_jobs(self, **kwargs):
        raise AssertionError("a store with overview() is not listed")


def test_a_store_with_an_overview_is_read_once_per_scrape(run):
    """One call per scrape, and its figures as given: finished statuses included."""
    store = OverviewStore()
    metrics = Metrics(app=_app(), store=store)

    async def main() -> bytes:
        await metrics.render()
        return (await metrics.render())[0]

    scrape = Scrape(run(main()))
    assert store.overviews == 2
    assert scrape.value("conveyor_jobs", status="completed") == 40
    assert scrape.value("conveyor_queue_depth") == 7
    assert scrape.value("conveyor_oldest_queued_job_age_seconds") == 0


def test_a_store_read_through_its_interface_is_bounded_and_says_when_capped(run, monkeypatch):
    """Past CAP jobs of a status, the read stops there and the overview says it was capped."""
    from conveyor.jobs import overview

    monkeypatch.setattr(overview, "CAP", 3)
    store, app = MemoryStore(), _app()

    class Listed:  # a store of its own kind: no overview(), only the interface's list_jobs
        async def list_jobs(self, **kwargs):
            return await store.list_jobs(**kwargs)

    async def main() -> StoreOverview:
        jobs = Jobs(store, app=app)
        for _ in range(5):
            await jobs.submit("noop", [1, 2])
        return await read_overview(Listed())  # type: ignore[arg-type]

    seen = run(main())
    assert seen.jobs["queued"] == 3
    assert seen.pending == 6
    assert seen.capped == frozenset({"queued"})
    assert not seen.finished_known
