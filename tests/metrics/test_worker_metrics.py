"""What a worker counts as it works, scraped and parsed: items by outcome, retries, latencies."""

import asyncio
import logging
from typing import Any

import pytest

import conveyor
from conveyor.jobs import App, Jobs, MemoryStore, Worker
from conveyor.jobs.observe import JobObserver
from conveyor.metrics import Metrics

from .kit import FAST, Scrape


def _app() -> App:
    app = App()

    @app.task("check")
    async def check(x):
        await asyncio.sleep(0.5)
        if x in (3, 7):
            msg = f"item {x} is bad"
            raise ValueError(msg)
        return x

    return app


def test_a_job_of_ten_items_with_two_failures_counts_eight_and_two(run):
    """The counters say 10 started, 8 succeeded, 2 failed (permanent), with their latencies."""
    store, app = MemoryStore(), _app()
    metrics = Metrics(app=app)

    async def main() -> bytes:
        jobs = Jobs(store, app=app)
        await jobs.submit("check", range(10), concurrency=5)
        worker = Worker(store, app, options=FAST, observers=[metrics.observer])
        await worker.run(until_idle=True)
        return (await metrics.render())[0]

    scrape = Scrape(run(main()))
    assert scrape.value("conveyor_items_started_total", task="check") == 10
    assert scrape.value("conveyor_item_attempts_total", task="check") == 10
    assert scrape.value("conveyor_items_succeeded_total", task="check") == 8
    assert scrape.value("conveyor_items_failed_total", task="check", reason="permanent") == 2
    # Each attempt took exactly 0.5 s of virtual time.
    ok = {"task": "check", "state": "succeeded"}
    assert scrape.value("conveyor_item_duration_seconds_count", **ok) == 8
    assert scrape.value("conveyor_item_duration_seconds_sum", **ok) == pytest.approx(4.0)
    assert scrape.value("conveyor_item_duration_seconds_bucket", **ok, le="0.25") == 0
    assert scrape.value("conveyor_item_duration_seconds_bucket", **ok, le="0.5") == 8


def test_retries_are_counted_by_the_kind_of_error(run):
    """An item told to retry after a 429-like error twice: 2 retries (rate_limited), 3 attempts."""
    store, app = MemoryStore(), App()
    seen: dict[int, int] = {}

    @app.task("limited")
    async def limited(x):
        seen[x] = seen.get(x, 0) + 1
        if seen[x] <= 2:
            raise conveyor.RetryAfter(1.0)
        return x

    metrics = Metrics(app=app)

    async def main() -> bytes:
        jobs = Jobs(store, app=app)
        await jobs.submit("limited", [1], attempts=3)
        await Worker(store, app, options=FAST, observers=[metrics.observer]).run(until_idle=True)
        return (await metrics.render())[0]

    scrape = Scrape(run(main()))
    assert scrape.value("conveyor_items_retried_total", task="limited", reason="rate_limited") == 2
    assert scrape.value("conveyor_item_attempts_total", task="limited") == 3
    assert scrape.value("conveyor_items_started_total", task="limited") == 1
    assert scrape.value("conveyor_items_succeeded_total", task="limited") == 1


def test_the_queue_wait_is_the_time_from_submit_to_the_first_claim(run):
    """A job submitted at 0 and first claimed at 5 s observes 5 s, once (later claims do not)."""
    store, app = MemoryStore(), _app()
    metrics = Metrics(app=app)

    async def main() -> bytes:
        jobs = Jobs(store, app=app)
        await jobs.submit("check", range(10), concurrency=2)
        await asyncio.sleep(5.0)
        await Worker(store, app, options=FAST, observers=[metrics.observer]).run(until_idle=True)
        return (await metrics.render())[0]

    scrape = Scrape(run(main()))
    assert scrape.value("conveyor_job_queue_wait_seconds_count", task="check") == 1
    assert scrape.value("conveyor_job_queue_wait_seconds_sum", task="check") == pytest.approx(5.0)


def test_two_metrics_never_share_counts(run):
    """Each Metrics has a registry of its own: a second one starts at zero (no global state)."""
    store, app = MemoryStore(), _app()
    first, second = Metrics(app=app), Metrics(app=app)

    async def main() -> tuple[bytes, bytes]:
        await Jobs(store, app=app).submit("check", [1, 2])
        await Worker(store, app, options=FAST, observers=[first.observer]).run(until_idle=True)
        return (await first.render())[0], (await second.render())[0]

    one, two = run(main())
    assert Scrape(one).value("conveyor_items_succeeded_total", task="check") == 2
    assert Scrape(two).samples("conveyor_items_succeeded_total") == []


class Broken(JobObserver):
    def event(self, job, event):
        raise RuntimeError("observer bug")

    def claimed(self, worker_id, claim):
        raise RuntimeError("observer bug")

    def attempt(self, job, item, item_input):
        raise RuntimeError("observer bug")

    def live(self):
        raise RuntimeError("observer bug")


def test_an_observer_that_raises_loses_no_result(run, caplog):
    """A failing observer is logged once; every item is still settled and counted by the rest."""
    store, app = MemoryStore(), _app()
    metrics = Metrics(app=app)

    async def main() -> tuple[Any, bytes]:
        jobs = Jobs(store, app=app)
        job = await jobs.submit("check", range(10), concurrency=5)
        worker = Worker(store, app, options=FAST, observers=[Broken(), metrics.observer])
        await worker.run(until_idle=True)
        return await jobs.get(job.id), (await metrics.render())[0]

    with caplog.at_level(logging.ERROR, logger="conveyor.jobs"):
        job, body = run(main())
    assert (job.status, job.counts.succeeded, job.counts.failed) == ("completed", 8, 2)
    assert Scrape(body).value("conveyor_items_succeeded_total", task="check") == 8
    assert sum("observer failed" in r.getMessage() for r in caplog.records) == 1
