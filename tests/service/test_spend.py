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
                async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
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
