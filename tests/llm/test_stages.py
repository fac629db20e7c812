"""The budget and quota stages, written once: the same rule and words on every path.

`SpendBudget` is tested with plain numbers; then the same quota answer halts the wrapped
client, ``conveyor run`` and a job, and the one budget refuses with its reason in both the
run and the job.
"""

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx2

from conveyor import Limiter, QuotaExhausted
from conveyor.http import RawAnswer
from conveyor.http.errors import HTTPStatusError
from conveyor.http.response import Response
from conveyor.jobs import App, JobOptions, Jobs
from conveyor.jobs.stores.memory import MemoryStore
from conveyor.limits.budget import SpendBudget
from conveyor.limits.quota import quota_halt
from conveyor.llm import CACHE_HEADER, LlmOptions, Price, PriceTable, ResponseCache, limit_openai

from ..http.fakes import FakeAPI, ok
from ..http.helpers import read_results, write_requests
from .test_errors import _run as run_batch
from .test_jobs_budget import _drain, _line
from .test_wrap import FAST_RETRY, MESSAGES, _client, _transport

QUOTA = {"error": {"message": "You exceeded your current quota.", "type": "insufficient_quota",
                   "param": None, "code": "insufficient_quota"}}  # fmt: skip


def _quota_answer() -> RawAnswer:
    return RawAnswer(429, {"content-type": "application/json"}, json.dumps(QUOTA).encode())


def _budget(spent: float = 0.0) -> SpendBudget:
    return SpendBudget(10.0, spent_usd=lambda: spent, option="--max-cost", items="requests")


def test_the_budget_holds_while_spent_plus_held_plus_bound_fits():
    """$3 spent: bounds of 4 and 3 fit ($10), a third of 1 does not, and waiting may help."""
    budget = _budget(3.0)
    assert budget.reserve("a", "request a", "m", 4.0) is None
    assert budget.reserve("b", "request b", "m", 3.0) is None
    refused = budget.reserve("c", "request c", "m", 1.0)
    assert refused is not None
    why, final = refused
    assert not final
    assert why.startswith("budget reached: $3.0000 spent of $10 (--max-cost)")
    assert "request c may cost up to $1.0000" in why
    budget.release("a")
    assert budget.held_usd == 3.0
    assert budget.reserve("c", "request c", "m", 1.0) is None


def test_a_model_with_no_price_is_refused_for_good():
    """No price: no budget can be kept, whatever is spent; the reason names the model."""
    refused = _budget().reserve("a", "item 3", "nameless", None)
    assert refused is not None
    assert refused[1] is True
    assert "no price for the model 'nameless' of item 3" in refused[0]


def test_the_same_budget_refuses_the_run_and_the_job_with_its_reason(tmp_path: Path, run):
    """A budget below one request's bound: the run and the job both halt on one rule's words."""
    write_requests(tmp_path / "in.jsonl", 2)
    api = FakeAPI(lambda n, body, headers: ok())
    prices = PriceTable({"mock-1": Price(1.0, 1.0)})  # write_requests' model
    _, result = run(run_batch(tmp_path, api, llm=LlmOptions(prices=prices, max_cost_usd=1e-9)))
    assert api.calls == 0
    assert result.halted is not None
    assert result.halted.startswith("budget reached: $0.0000 spent of $1e-09 (--max-cost)")

    async def job_step() -> str | None:
        app = App()
        app.add_http_task(name="http:mock", base_url="http://api.test", transport=api)
        store = MemoryStore()
        jobs = Jobs(store, app=app)
        options = JobOptions(max_cost_usd=1e-9)
        job = await jobs.submit("http:mock", [_line(0)], options=options)
        await _drain(store, app)
        after = await jobs.get(job.id)
        await jobs.close()
        return after.step

    step = asyncio.run(job_step())
    assert api.calls == 0
    assert step is not None
    assert step.startswith("budget reached: $0.0000 spent of $1e-09 (max_cost_usd)")


def test_quota_halt_reads_one_rule_and_names_the_halted_limiter():
    """An insufficient_quota answer means QuotaExhausted: the limiter's, once it has halted."""
    error = HTTPStatusError(Response(429, {}, QUOTA), {})
    limiter = Limiter("openai")
    first = quota_halt(error, [limiter])
    assert isinstance(first, QuotaExhausted)
    assert "You exceeded your current quota." in str(first)
    limiter.halt("spent")
    assert quota_halt(error, [limiter]) is limiter.halted
    assert quota_halt(HTTPStatusError(Response(429, {}, {"error": {}}), {}), [limiter]) is None


def test_the_wrapped_client_the_run_and_a_job_halt_on_the_same_quota_answer(tmp_path, run):
    """One 429 insufficient_quota: the client raises QuotaExhausted, the run and the job halt."""
    limiter = Limiter("openai")
    http = httpx2.AsyncClient(transport=_transport([(429, QUOTA)]))

    async def wrapped() -> BaseException:
        client = limit_openai(
            _client("http://api.test", http_client=http), limiters=[limiter], retry=FAST_RETRY
        )
        try:
            await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        except QuotaExhausted as exc:
            return exc
        raise AssertionError

    halted = asyncio.run(wrapped())
    assert halted is limiter.halted

    write_requests(tmp_path / "in.jsonl", 3)
    api = FakeAPI(lambda n, body, headers: _quota_answer())
    _, result = run(run_batch(tmp_path, api))
    assert api.calls == 1
    assert result.halted is not None
    assert "You exceeded your current quota." in result.halted
    assert (result.summary.failed, result.summary.cancelled) == (0, 1)
    assert read_results(tmp_path / "out.jsonl") == []

    async def job() -> Any:
        api = FakeAPI(lambda n, body, headers: _quota_answer(), latency_s=0.0)
        app = App()
        app.add_http_task(name="http:mock", base_url="http://api.test", transport=api)
        store = MemoryStore()
        jobs = Jobs(store, app=app)
        options = JobOptions(concurrency=1)
        submitted = await jobs.submit("http:mock", [_line(i) for i in range(3)], options=options)
        worker = await _drain(store, app)
        after = await jobs.get(submitted.id)
        await jobs.close()
        return api.calls, after, worker

    calls, after, worker = asyncio.run(job())
    assert calls == 1  # the first answer halts the run: nothing more is sent
    assert (after.counts.failed, after.counts.pending) == (0, 3)
    assert after.step is not None
    assert "You exceeded your current quota." in after.step
    assert after.id in worker.over_budget  # not claimed again by this worker


class _CountingCache(ResponseCache):
    """The SQLite cache, counting its look-ups."""

    fetches = 0

    async def fetch(self, key: str) -> Any:
        type(self).fetches += 1
        return await super().fetch(key)


def test_a_jobs_cache_hit_takes_no_limiter_slot_and_a_miss_is_looked_up_once(tmp_path):
    """Two jobs of one item: the second is answered before any slot; each item asks once."""
    api = FakeAPI(lambda n, body, headers: ok({"choices": []}), latency_s=0.0)
    limiter = Limiter("upstream")
    store = MemoryStore()

    async def main() -> list[Any]:
        results = []
        for _ in range(2):
            app = App()
            app.add_limiter(limiter)
            app.add_http_task(
                name="http:mock",
                base_url="http://api.test",
                transport=api,
                cache=_CountingCache(tmp_path / "answers.db"),
                limiters=["upstream"],
            )
            jobs = Jobs(store, app=app)
            job = await jobs.submit("http:mock", [_line(0)])
            await _drain(store, app)
            results.extend([i async for i in jobs.results(job.id)])
        return results

    first, second = asyncio.run(main())
    assert api.calls == 1
    assert limiter.admitted == 1  # the hit took no slot
    assert _CountingCache.fetches == 2  # one look-up per item: a miss is not asked again
    assert second.result["headers"][CACHE_HEADER] == "hit"
    assert (first.attempts, second.attempts) == (1, 0)  # the hit was never sent
