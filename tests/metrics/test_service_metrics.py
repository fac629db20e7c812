"""``GET /metrics`` on the service: without keys on its port; with keys on a listener of its own.

The service runs in-process with its worker on real time (as the other service tests): a job
of echo items settles in milliseconds, and each wait is bounded (5 s).
"""

import asyncio
import socket

import httpx

from conveyor.jobs import MemoryStore
from conveyor.service import create_app

from ..service.conftest import FAST_WORKER, Api, api, config, key_for, make_app
from .kit import Scrape

TEN_WITH_TWO_FAILURES = [{"n": i, "fail": i in (3, 7)} for i in range(10)]


def test_metrics_count_a_job_submitted_over_the_api(tmp_path):
    """After a job of 10 items with 2 failures: 8 and 2, the store up, no job left queued."""

    async def main() -> httpx.Response:
        async with api(config(tmp_path)) as service:
            r = await service.client.post(
                "/v1/jobs", json={"task": "echo", "items": TEN_WITH_TWO_FAILURES}
            )
            assert r.status_code == 202, r.text
            done = await service.wait_done(r.json()["id"])
            assert done["counts"]["failed"] == 2
            return await service.client.get("/metrics")

    r = asyncio.run(main())
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    assert r.headers["cache-control"] == "no-store"
    scrape = Scrape(r.text)
    assert scrape.value("conveyor_items_succeeded_total", task="echo") == 8
    assert scrape.value("conveyor_items_failed_total", task="echo", reason="permanent") == 2
    assert scrape.value("conveyor_store_up") == 1
    assert scrape.value("conveyor_jobs", status="queued") == 0


def test_openmetrics_is_served_when_asked_for(tmp_path):
    """Prometheus asking for OpenMetrics gets it (the text ends with # EOF)."""

    async def main() -> httpx.Response:
        async with api(config(tmp_path)) as service:
            accept = "application/openmetrics-text; version=1.0.0"
            return await service.client.get("/metrics", headers={"Accept": accept})

    r = asyncio.run(main())
    assert r.headers["content-type"].startswith("application/openmetrics-text")
    assert r.text.rstrip().endswith("# EOF")


def test_with_api_keys_the_apis_port_refuses_metrics_even_with_a_key(tmp_path):
    """403 naming --metrics-port: a tenant's key must not read every tenant's figures."""

    async def main() -> tuple[httpx.Response, httpx.Response]:
        headers = key_for(tmp_path, "acme")
        async with api(config(tmp_path, keys=True)) as service:
            return (
                await service.client.get("/metrics"),
                await service.client.get("/metrics", headers=headers),
            )

    for r in asyncio.run(main()):
        assert r.status_code == 403
        assert r.headers["content-type"] == "application/problem+json"
        assert "--metrics-port" in r.json()["detail"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_with_api_keys_the_metrics_listener_serves_them(tmp_path):
    """metrics_listener: /metrics on 127.0.0.1:PORT, counting the service's jobs (real sockets)."""
    port = _free_port()
    headers = key_for(tmp_path, "acme")
    asgi = create_app(
        config(tmp_path, keys=True),
        app=make_app(),
        store=MemoryStore(),
        worker_options=FAST_WORKER,
        metrics_listener=("127.0.0.1", port),
    )

    async def main() -> tuple[httpx.Response, httpx.Response]:
        async with asgi.router.lifespan_context(asgi):
            transport = httpx.ASGITransport(app=asgi)
            async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
                r = await c.post(
                    "/v1/jobs", json={"task": "echo", "items": [1, 2, 3]}, headers=headers
                )
                await Api(c, asgi).wait_done(r.json()["id"], headers=headers)
            async with httpx.AsyncClient() as outside:
                url = f"http://127.0.0.1:{port}/metrics"
                return (
                    await outside.get(url),
                    await outside.get(url, headers={"Host": "evil.example"}),
                )

    ok, rebound = asyncio.run(main())
    assert ok.status_code == 200
    assert Scrape(ok.text).value("conveyor_items_succeeded_total", task="echo") == 3
    assert rebound.status_code == 421  # a page's own name for 127.0.0.1 (DNS rebinding)


def test_a_traceparent_header_at_submit_is_kept_with_the_job(tmp_path):
    """POST /v1/jobs with traceparent: the job's options carry it; a malformed one is ignored."""
    good = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"
    store = MemoryStore()

    async def main() -> list[str | None]:
        async with api(config(tmp_path), worker=False, store=store) as service:
            kept = []
            for traceparent in (good, "00-garbage"):
                r = await service.client.post(
                    "/v1/jobs",
                    json={"task": "echo", "items": [1]},
                    headers={"traceparent": traceparent},
                )
                assert r.status_code == 202, r.text
                job = await store.get_job(r.json()["id"])
                assert job is not None
                kept.append(job.options.traceparent)
            return kept

    assert asyncio.run(main()) == [good, None]
