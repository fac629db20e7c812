"""The jobs' http task with a connection's response cache."""

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from conveyor import Retry
from conveyor.http import Batch, BatchFiles, BatchLimits, Endpoint, RawAnswer, prepare
from conveyor.http.redact import REDACTED
from conveyor.jobs import App, Jobs, SqliteStore, Worker
from conveyor.jobs.http_task import HttpJobTask
from conveyor.llm import CACHE_HEADER, LlmOptions, ResponseCache

from ..http.fakes import FakeAPI, status
from ..http.helpers import read_results, write_requests
from .test_cache_and_budget import answer


class _Ctx:
    job_id, index, attempt, idempotency_key, tenant = "j", 0, 0, "j/0", "default"


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


# -- the cache keeps no secret and no other tenant's answer ------------------------------------

SECRET = "sk-live-0123456789abcdef"  # noqa: S105 - a made-up test value


def echo(n: int, body: Any, headers: Mapping[str, str]) -> RawAnswer:
    """An upstream that quotes the request's Authorization header back, in body and headers."""
    data = {
        "model": "mock-1",
        "echo": {"authorization": headers.get("Authorization"), "call": n},
        "choices": [{"index": 0, "message": {"content": "ok"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }
    auth = headers.get("Authorization", "")
    return RawAnswer(
        200,
        {"content-type": "application/json", "x-request-id": auth, "authorization": auth},
        json.dumps(data).encode(),
    )


def _ctx(tenant: str) -> Any:
    ctx = _Ctx()
    ctx.tenant = tenant
    return ctx


def _cache_bytes(path: Path) -> bytes:
    """Every byte the SQLite cache wrote: the file, its write-ahead log and shared memory."""
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


def test_two_tenants_sending_the_same_request_do_not_share_an_answer(tmp_path, run):
    """The key covers the tenant: the second tenant's identical request misses and is sent."""
    api = FakeAPI(answer)
    task = HttpJobTask(
        base_url="http://api.test", headers={}, transport=api, cache=ResponseCache(tmp_path / "c")
    )

    async def three() -> Any:
        acme = await task(ITEM, _ctx("acme"))
        globex = await task(ITEM, _ctx("globex"))
        acme_again = await task(ITEM, _ctx("acme"))
        await task.aclose()
        return acme, globex, acme_again

    acme, globex, acme_again = run(three())
    assert api.calls == 2
    assert CACHE_HEADER not in acme["headers"]
    assert CACHE_HEADER not in globex["headers"]
    assert acme_again["headers"][CACHE_HEADER] == "hit"


def test_two_connections_to_one_url_and_cache_do_not_share_answers(tmp_path, run):
    """The key covers the connection: two accounts at one base URL never answer each other."""
    api = FakeAPI(answer)
    path = tmp_path / "c"
    one, two = (
        HttpJobTask(
            name=name,
            base_url="http://api.test",
            headers={"Authorization": f"Bearer {name}-key-0123456789"},
            transport=api,
            cache=ResponseCache(path),
        )
        for name in ("http:one", "http:two")
    )

    async def both() -> Any:
        first = await one(ITEM, _ctx("acme"))
        second = await two(ITEM, _ctx("acme"))
        await one.aclose()
        await two.aclose()
        return first, second

    first, second = run(both())
    assert api.calls == 2
    assert CACHE_HEADER not in first["headers"]
    assert CACHE_HEADER not in second["headers"]
    assert "one-key" not in json.dumps(second)


def test_an_echoed_key_is_in_neither_the_result_nor_the_cache_file_on_miss_or_hit(tmp_path, run):
    """What is cached is the redacted result: the secret is in no result and no cached byte."""
    api = FakeAPI(echo)
    path = tmp_path / "c.db"
    task = HttpJobTask(
        base_url="http://api.test",
        headers={"Authorization": f"Bearer {SECRET}"},
        transport=api,
        cache=ResponseCache(path),
    )

    async def twice() -> Any:
        first = await task(ITEM, _ctx("acme"))
        second = await task(ITEM, _ctx("acme"))
        await task.aclose()
        return first, second

    first, second = run(twice())
    assert api.calls == 1
    assert second["headers"][CACHE_HEADER] == "hit"
    for result in (first, second):
        text = json.dumps(result)
        assert SECRET not in text
        assert "authorization" not in result["headers"]
        assert result["body"]["echo"]["authorization"] == REDACTED
        assert result["headers"]["x-request-id"] == REDACTED
    assert {k: v for k, v in second["headers"].items() if k != CACHE_HEADER} == first["headers"]
    assert second["body"] == first["body"]
    assert SECRET.encode() not in _cache_bytes(path)


def test_an_answer_cached_unredacted_comes_back_redacted(tmp_path, run):
    """A hit is redacted as it is read: an entry stored with the key in it does not return it."""
    api = FakeAPI(answer)
    backend = ResponseCache(tmp_path / "c")
    task = HttpJobTask(
        base_url="http://api.test",
        headers={"Authorization": f"Bearer {SECRET}"},
        transport=api,
        cache=backend,
    )
    request = task._parse(ITEM, 0)
    assert task._cache is not None
    key = task._cache.key(request.method, request.url, request.body, tenant="acme")
    backend.put(key, 200, {"x-api-key": SECRET, "x-request-id": SECRET}, {"echo": SECRET})

    async def once() -> Any:
        result = await task(ITEM, _ctx("acme"))
        await task.aclose()
        return result

    result = run(once())
    assert api.calls == 0
    assert SECRET not in json.dumps(result)
    assert "x-api-key" not in result["headers"]
    assert result["body"] == {"echo": REDACTED}


def test_jobs_of_two_tenants_through_a_cached_connection_keep_key_and_answers_apart(tmp_path, run):
    """Whole path: per-tenant hits, and the echoed key in no result, store byte or cache byte."""
    api = FakeAPI(echo)
    cache_path, store_path = tmp_path / "answers.db", tmp_path / "jobs.db"
    store = SqliteStore(store_path)

    async def main() -> list[Any]:
        results = []
        for tenant in ("acme", "acme", "globex"):
            # One worker per job, one after the other (a worker closes its app when it ends).
            app = App()
            app.add_http_task(
                name="http:openai",
                base_url="http://api.test",
                headers={"Authorization": f"Bearer {SECRET}"},
                transport=api,
                cache=ResponseCache(cache_path),
            )
            jobs = Jobs(store, app=app)
            job = await jobs.submit("http:openai", [ITEM], tenant=tenant)
            await Worker(store, app).run(until_idle=True)
            results.append([i.result async for i in jobs.results(job.id)])
        await store.close()
        return results

    first, second, other = (r[0] for r in run(main()))
    assert api.calls == 2  # acme's second job hit; globex's missed
    assert CACHE_HEADER not in first["headers"]
    assert second["headers"][CACHE_HEADER] == "hit"
    assert CACHE_HEADER not in other["headers"]
    for result in (first, second, other):
        assert SECRET not in json.dumps(result)
        assert result["body"]["echo"]["authorization"] == REDACTED
    assert SECRET.encode() not in _cache_bytes(cache_path)
    assert SECRET.encode() not in _cache_bytes(store_path)


def test_a_run_with_a_secret_header_caches_only_the_redacted_answer(tmp_path, run):
    """`conveyor run --cache`: the echoed key is in no cached byte, and hits come back redacted."""
    write_requests(tmp_path / "in.jsonl", 2)
    path = tmp_path / "cache.db"
    endpoint = Endpoint(
        base_url="http://api.test", secret_headers=(("Authorization", f"Bearer {SECRET}"),)
    )

    async def once(api: FakeAPI) -> None:
        files = BatchFiles(input=tmp_path / "in.jsonl", output=tmp_path / "out.jsonl")
        plan = prepare(files, endpoint)
        try:
            await Batch(
                plan,
                limits=BatchLimits(concurrency=1),
                retry=Retry(attempts=1),
                transport=api,
                llm=LlmOptions(cache=path),
            ).run()
        finally:
            plan.close()

    first, second = FakeAPI(echo), FakeAPI(echo)
    run(once(first))
    (tmp_path / "out.jsonl").unlink()
    run(once(second))
    assert (first.calls, second.calls) == (2, 0)
    assert SECRET.encode() not in _cache_bytes(path)
    records = read_results(tmp_path / "out.jsonl")
    assert all(r["response"]["headers"][CACHE_HEADER] == "hit" for r in records)
    assert all(r["response"]["body"]["echo"]["authorization"] == REDACTED for r in records)
