"""The jobs' http task with a connection's response cache."""

from typing import Any

from conveyor.jobs.http_task import HttpJobTask
from conveyor.llm import CACHE_HEADER, ResponseCache

from ..http.fakes import FakeAPI, status
from .test_cache_and_budget import answer


class _Ctx:
    job_id, index, attempt, idempotency_key = "j", 0, 0, "j/0"


ITEM = {
    "custom_id": "a",
    "method": "POST",
    "url": "/v1/chat/completions",
    "body": {"model": "mock-1", "messages": [{"role": "user", "content": "hi"}]},
}


def test_a_repeated_item_is_answered_from_the_connections_cache(tmp_path, run):
    """The second identical request is not sent; its result says it came from the cache."""
    api = FakeAPI(answer)
    task = HttpJobTask(
        base_url="http://api.test", headers={}, transport=api, cache=ResponseCache(tmp_path / "c")
    )

    async def twice() -> Any:
        first = await task(ITEM, _Ctx())  # type: ignore[arg-type]
        second = await task(ITEM, _Ctx())  # type: ignore[arg-type]
        await task.aclose()
        return first, second

    first, second = run(twice())
    assert api.calls == 1
    assert CACHE_HEADER not in first["headers"]
    assert second["headers"][CACHE_HEADER] == "hit"
    assert second["body"] == first["body"]
    assert (task.tally.cache_hits, task.tally.tokens_in) == (1, 10)


def test_a_failed_item_is_not_cached(tmp_path, run):
    """A 500 is raised and not stored: the next attempt is sent."""
    api = FakeAPI(lambda n, body, headers: status(500) if n == 1 else answer(n, body, headers))
    task = HttpJobTask(
        base_url="http://api.test", headers={}, transport=api, cache=ResponseCache(tmp_path / "c")
    )

    async def twice() -> Any:
        try:
            await task(ITEM, _Ctx())  # type: ignore[arg-type]
        except Exception as exc:
            first = exc
        second = await task(ITEM, _Ctx())  # type: ignore[arg-type]
        await task.aclose()
        return first, second

    first, second = run(twice())
    assert "HTTP 500" in str(first)
    assert CACHE_HEADER not in second["headers"]
    assert api.calls == 2
