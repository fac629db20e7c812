"""The LLM tasks' tokens and cost and their HTTP answers, read from what the task counted."""

import pytest

from conveyor.jobs import Jobs, MemoryStore, Worker
from conveyor.metrics import Metrics

from .kit import FAST, Scrape
from .llm_kit import line, llm_app


def test_tokens_and_cost_are_the_answers_usage_priced(run):
    """4 answers of 100 + 10 tokens of gpt-4o-mini: 400 in, 40 out, priced; a 400 is a failure."""
    store, app = MemoryStore(), llm_app()
    metrics = Metrics(app=app, store=store)
    items = [line(i) for i in range(4)] + [line(4, model="bad")]

    async def main() -> bytes:
        await Jobs(store, app=app).submit("http", items, concurrency=5)
        await Worker(store, app, options=FAST, observers=[metrics.observer]).run(until_idle=True)
        return (await metrics.render())[0]

    scrape = Scrape(run(main()))
    assert scrape.value("conveyor_llm_tokens_total", task="http", type="input") == 400
    assert scrape.value("conveyor_llm_tokens_total", task="http", type="output") == 40
    # gpt-4o-mini: $0.15 in and $0.60 out per million tokens.
    expected = (400 * 0.15 + 40 * 0.60) / 1e6
    assert scrape.value("conveyor_llm_cost_usd_total", task="http") == pytest.approx(expected)
    assert scrape.value("conveyor_http_requests_total", task="http") == 5
    assert scrape.value("conveyor_items_succeeded_total", task="http") == 4
    failed = scrape.value("conveyor_items_failed_total", task="http", reason="permanent")
    assert failed == 1
