"""The dashboard's views over HTTP: a job's rate series, the limiters, the workers, the icon.

On the virtual clock: the worker, the limiter and the store read its time, so the seconds a
job's items end in are exact.
"""

import asyncio
from pathlib import Path
from typing import Any

import httpx

from conveyor import Limiter
from conveyor.jobs import App, MemoryStore
from conveyor.service import create_app

from .conftest import FAST_WORKER, config


def limited_app(per_second: float) -> App:
    """One task, ``call``, through a limiter ``api`` of `per_second` requests a second."""
    app = App()
    app.add_limiter(Limiter("api", requests_per_second=per_second))

    @app.task("call", limiters=["api"])
    async def call(item: Any) -> Any:
        await asyncio.sleep(0.05)
        if isinstance(item, dict) and item.get("fail"):
            msg = "x" * 500
            raise ValueError(msg)
        return item

    return app


async def _service(tmp_path: Path, app: App, work: Any) -> Any:
    asgi = create_app(config(tmp_path), app=app, store=MemoryStore(), worker_options=FAST_WORKER)
    async with asgi.router.lifespan_context(asgi):
        transport = httpx.ASGITransport(app=asgi)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            return await work(client)


async def _done(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    async with asyncio.timeout(600):
        while True:
            job: dict[str, Any] = (await client.get(f"/v1/jobs/{job_id}")).json()
            if job["status"] in {"completed", "failed", "cancelled"}:
                return job
            await asyncio.sleep(0.25)


def test_the_series_counts_items_by_the_second_they_ended_and_never_passes_the_limit(run, tmp_path):
    """120 items at 20/s: 20 a second, all counted, kept after the job is done."""

    async def work(client: httpx.AsyncClient) -> Any:
        body = {"task": "call", "items": list(range(120)), "options": {"concurrency": 50}}
        job = (await client.post("/v1/jobs", json=body)).json()
        done = await _done(client, job["id"])
        series = (await client.get(f"/v1/jobs/{job['id']}/series")).json()
        return done, series

    done, series = run(_service(tmp_path, limited_app(20), work))
    assert done["status"] == "completed"
    assert series["recorded"] is True
    assert series["bucket_s"] == 1
    assert sum(series["per_s"]) == 120  # every settled item, once
    assert max(series["per_s"]) <= 20  # no second above the limit: no point above it either
    assert series["busiest_second"] <= 20
    assert 5 <= len(series["per_s"]) <= 8  # about six seconds of work, each one a point
    assert series["limits"] == [{"limiter": "api", "unit": "requests", "per_second": 20.0}]
    assert series["in_flight"] == 0
    assert series["claimed"] == 0


def test_the_series_of_a_failed_item_counts_it_and_an_unknown_job_is_404(run, tmp_path):
    """Failed items are work done too; another job id answers 404 with a hint."""

    async def work(client: httpx.AsyncClient) -> Any:
        body = {"task": "call", "items": [{"fail": True}, 1, 2]}
        job = (await client.post("/v1/jobs", json=body)).json()
        await _done(client, job["id"])
        series = (await client.get(f"/v1/jobs/{job['id']}/series")).json()
        missing = await client.get("/v1/jobs/nope/series")
        extra = await client.get(f"/v1/jobs/{job['id']}/series?x=1")
        return series, missing, extra

    series, missing, extra = run(_service(tmp_path, limited_app(100), work))
    assert sum(series["per_s"]) == 3
    assert missing.status_code == 404
    assert "GET /v1/jobs" in missing.json()["detail"]
    assert extra.status_code == 422


def test_the_limiters_view_shows_the_rate_admitted_against_the_limit(run, tmp_path):
    """Sampled once a second at most: the rate between two reads is what was admitted."""

    async def work(client: httpx.AsyncClient) -> Any:
        first = (await client.get("/v1/limiters")).json()
        body = {"task": "call", "items": list(range(40)), "options": {"concurrency": 50}}
        job = (await client.post("/v1/jobs", json=body)).json()
        await asyncio.sleep(1.0)
        await client.get("/v1/limiters")
        await asyncio.sleep(0.2)
        too_soon = (await client.get("/v1/limiters")).json()
        await _done(client, job["id"])
        return first, too_soon, (await client.get("/v1/limiters")).json()

    first, too_soon, last = run(_service(tmp_path, limited_app(10), work))
    lim = first["data"][0]
    assert lim["name"] == "api"
    assert lim["limits"] == [
        {"unit": "requests", "limit": 10.0, "period_s": 1.0, "per_second": 10.0}
    ]
    assert lim["series"] == []  # one sample: no span yet
    assert len(too_soon["data"][0]["series"]) == 1  # a read 0.2 s after adds no sample
    spans = last["data"][0]["series"]
    assert all(rate <= 10 * 1.01 for _, _, rate, _ in spans)
    admitted = sum((t1 - t0) * rate for t0, t1, rate, _ in spans)
    assert round(admitted) == 40
    assert last["data"][0]["pushbacks"] == {}
    assert last["data"][0]["in_flight"] == 0


def test_the_workers_view_shows_the_in_process_worker_and_its_lease(run, tmp_path):
    """The store's leases: the service's own worker, alive, with its heartbeat."""

    async def work(client: httpx.AsyncClient) -> Any:
        body = {"task": "call", "items": list(range(5))}
        job = (await client.post("/v1/jobs", json=body)).json()
        await _done(client, job["id"])
        return (await client.get("/v1/workers")).json()

    answer = run(_service(tmp_path, limited_app(100), work))
    own = answer["this_process"]
    assert own["alive"] is True
    assert own["settled"] == 5
    assert own["store_outages"] == 0
    assert "call" in own["tasks"]  # what it claims: jobs of its tasks only
    (worker,) = answer["data"]
    assert worker["id"] == own["id"]
    assert worker["in_this_process"] is True
    assert worker["alive"] is True
    assert worker["running_items"] == 0
    assert 0 <= answer["now"] - worker["renewed_at"] <= own["lease_s"]


def test_the_favicon_is_served(run, tmp_path):
    """``/favicon.ico`` answers an SVG icon, not a 404."""

    async def work(client: httpx.AsyncClient) -> Any:
        return await client.get("/favicon.ico")

    answer = run(_service(tmp_path, limited_app(100), work))
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("image/svg+xml")
    assert answer.content.startswith(b"<svg")
