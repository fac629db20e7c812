"""The jobs' ``http`` task parses each item's request once, however many attempts and stages."""

from typing import Any

import pytest

from conveyor import Limiter
from conveyor.jobs import App, Jobs, MemoryStore, Worker
from conveyor.jobs.model import JobOptions
from conveyor.llm import PriceTable

from ..parse_counts import PARSE, EveryThirdFailsOnce, count_parses

N = 100
BASE = "https://api.test"


def item(i: int) -> dict[str, Any]:
    """A chat request line, its prompt different per item."""
    body = {"model": "mock-1", "max_tokens": 8, "messages": [{"role": "user", "content": f"{i}"}]}
    return {"custom_id": f"c{i}", "method": "POST", "url": "/v1/chat/completions", "body": body}


@pytest.mark.parametrize("budget", [None, 100.0], ids=["plain", "budget"])
def test_each_item_is_parsed_once_per_attempt_and_its_body_encoded_once(
    run, monkeypatch: pytest.MonkeyPatch, budget: float | None
) -> None:
    """Per attempt: one parse of the stored item and one of the answer, one body encoding.

    With a token limiter (the item's cost per dimension) and a spend budget (its bound).
    """
    api = EveryThirdFailsOnce()
    monkeypatch.setattr(PriceTable, "default", lambda: _PRICES)
    limiter = Limiter("tokens", tokens_per_minute=10_000_000)
    app = App(limiters=[limiter])
    task = app.add_http_task(base_url=BASE, limiters=["tokens"], transport=api)
    store = MemoryStore()

    async def main() -> list[Any]:
        jobs = Jobs(store, app=app)
        options = JobOptions(concurrency=10, attempts=3, max_cost_usd=budget)
        job = await jobs.submit("http", [item(i) for i in range(N)], options=options)
        counts.clear()
        await Worker(store, app).run(until_idle=True)
        await app.aclose()
        seen = dict(counts)
        return [seen, [i async for i in jobs.results(job.id)]]

    counts = count_parses(monkeypatch, about=_item_or_answer)
    seen, items = run(main())
    assert task.name == "http"
    assert [i.state for i in items] == ["succeeded"] * N
    assert api.calls > N  # some items took two attempts
    assert seen[PARSE] == 2 * api.calls
    assert seen["encode conveyor.http.request"] == api.calls


def _item_or_answer(text: str | bytes) -> bool:
    """Whether `text` is an item (a request line) or an answer (with its usage)."""
    data = text.encode() if isinstance(text, str) else bytes(text)
    return any(key in data for key in (b'"custom_id"', b'"usage"', b'"error"'))


_PRICES = PriceTable.parse('[models."mock-1"]\ninput = 1.0\noutput = 2.0\n')
