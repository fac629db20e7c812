"""The tokens and cost of LLM jobs in their summary, summed from the stored results on read.

The service's connection is the project's mock API on 127.0.0.1 (1 ms latency); each wait
polls the job every 20 ms, bounded by 10 s, far above the tenth of a second the job takes.
"""

import asyncio
from typing import Any

import httpx
import pytest

from conveyor.jobs import App
from conveyor.llm.pricing import PriceTable, usage_of
from conveyor.mockapi import MockAPI, MockConfig
from conveyor.service import Connection, ServiceConfig, create_app
from conveyor.service.spend import _Tally

from .conftest import FAST_WORKER


def _line(i: int, model: str) -> dict[str, Any]:
    body = {"model": model, "messages": [{"role": "user", "content": f"q {i}"}], "max_tokens": 20}
    return {"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions", "body": body}


@pytest.mark.parametrize("store", ["memory:", "sqlite"])
def test_an_llm_jobs_summary_shows_its_tokens_and_cost(tmp_path, store):
    """GET /v1/jobs/{id}: tokens in and out and cost_usd are the sums of the answers' usage."""
    url = f"sqlite:///{tmp_path / 'jobs.db'}" if store == "sqlite" else store
    items = [_line(i, "gpt-4o-mini") for i in range(6)] + [_line(6, "no-such-model")]

    async def main() -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
        async with MockAPI(MockConfig(latency_ms=1.0)) as upstream:
            cfg = ServiceConfig(
                store=url,
                keys_file=None,
                files_dir=tmp_path / "files",
                connections=(Connection(name="mock", base_url=upstream.base_url),),
            )
            asgi = create_app(cfg, app=App(), worker_options=FAST_WORKER)
            async with asgi.router.lifespan_context(asgi):
                transport = httpx.ASGITransport(app=asgi)
                async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
                    r = await c.post("/v1/jobs", json={"task": "http:mock", "items": items})
                    assert r.status_code == 202, r.text
                    job = r.json()
                    async with asyncio.timeout(10):
                        while job["status"] != "completed":
                            await asyncio.sleep(0.02)
                            job = (await c.get(f"/v1/jobs/{job['id']}")).json()
                    page = await c.get(f"/v1/jobs/{job['id']}/results", params={"format": "json"})
                    listed = (await c.get("/v1/jobs")).json()["data"][0]
                    return job, page.json()["data"], listed

    job, results, listed = asyncio.run(main())
    usages = [usage_of(x["result"]["body"]) for x in results]
    assert all(u is not None for u in usages)
    prices = PriceTable.default()
    summary = job["summary"]
    assert summary["tokens_in"] == sum(u.tokens_in for u in usages if u) > 0
    assert summary["tokens_out"] == sum(u.tokens_out for u in usages if u) > 0
    priced = [prices.answer_cost_usd(u) for u in usages if u]
    assert summary["cost_usd"] == pytest.approx(sum(p for p in priced if p is not None), abs=1e-6)
    assert summary["cost_usd"] > 0
    assert summary["unpriced_answers"] == 1
    assert listed["summary"]["tokens_in"] == summary["tokens_in"]
    # Every item ran: the projection is the cost itself.
    assert summary["projected_cost_usd"] == pytest.approx(summary["cost_usd"], abs=1e-6)


def test_the_projected_cost_is_the_mean_cost_per_item_that_ran_times_the_items():
    """cost / (succeeded + failed) * total; None before any item ran."""
    tally = _Tally(cost_usd=0.3, ran=3, total=10)
    assert tally.figures()["projected_cost_usd"] == pytest.approx(1.0)
    assert _Tally(cost_usd=0.0, ran=0, total=10).figures()["projected_cost_usd"] is None


def test_a_budget_is_refused_for_a_task_that_is_not_a_connections(tmp_path):
    """POST /v1/jobs with max_cost_usd on a plain task: 422; on http:<name>: kept in options."""
    app = App()
    app.add_task("echo", lambda item: item)

    async def main() -> tuple[httpx.Response, httpx.Response]:
        cfg = ServiceConfig(
            store="memory:",
            keys_file=None,
            files_dir=tmp_path / "files",
            connections=(Connection(name="mock", base_url="http://127.0.0.1:9"),),
        )
        asgi = create_app(cfg, app=app, worker=False)
        async with asgi.router.lifespan_context(asgi):
            transport = httpx.ASGITransport(app=asgi)
            async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
                budget = {"max_cost_usd": 2.5}
                plain = await c.post(
                    "/v1/jobs", json={"task": "echo", "items": [1], "options": budget}
                )
                llm = await c.post(
                    "/v1/jobs",
                    json={"task": "http:mock", "items": [_line(0, "m")], "options": budget},
                )
                return plain, llm

    plain, llm = asyncio.run(main())
    assert plain.status_code == 422
    assert "max_cost_usd" in plain.text
    assert llm.status_code == 202, llm.text
    assert llm.json()["options"]["max_cost_usd"] == 2.5
