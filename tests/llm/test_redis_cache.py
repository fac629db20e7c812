"""The response cache in Redis: the same interface as the SQLite one, chosen by a redis:// URL.

Against the local Redis (`tests.services.redis_url`: skipped when absent, failed when
``CI=true``). Every test uses its own upstream name, so its keys are its own; they expire
after a minute (``?ttl=60``).
"""

import argparse
import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from conveyor import ConfigError, Retry
from conveyor.http import Batch, BatchFiles, BatchLimits, Endpoint, prepare
from conveyor.jobs.http_task import HttpJobTask
from conveyor.llm import CACHE_HEADER, LlmOptions, RedisCache, ResponseCache, open_cache
from conveyor.llm.cache import REDIS_PREFIX

from ..http.fakes import FakeAPI, status
from ..http.helpers import id_counts, read_results, write_requests
from ..services import free_port, redis_url
from .test_cache_and_budget import answer


def _url() -> str:
    return f"{redis_url()}?ttl=60"


async def _run(tmp_path: Path, base_url: str, api: FakeAPI, cache: str, *, again: bool = False):
    files = BatchFiles(
        input=tmp_path / "in.jsonl", output=tmp_path / "out.jsonl", retry_failed=again
    )
    plan = prepare(files, Endpoint(base_url=base_url))
    batch = Batch(
        plan,
        limits=BatchLimits(concurrency=2),
        retry=Retry(attempts=1),
        transport=api,
        llm=LlmOptions(cache=cache),
    )
    try:
        return batch, await batch.run()
    finally:
        plan.close()


def test_a_redis_url_opens_the_redis_cache_and_a_path_the_sqlite_one(tmp_path):
    """open_cache picks the backend from the location; a bad ttl is a ConfigError."""
    redis_cache = open_cache("redis://127.0.0.1:6379/0?ttl=5")
    assert isinstance(redis_cache, RedisCache)
    assert redis_cache.ttl_s == 5
    asyncio.run(redis_cache.aclose())
    sqlite_cache = open_cache(tmp_path / "c.db")
    assert isinstance(sqlite_cache, ResponseCache)
    sqlite_cache.close()
    with pytest.raises(ConfigError, match="ttl"):
        open_cache("redis://127.0.0.1:6379/0?ttl=soon")


def test_the_cli_passes_a_redis_url_through_unchanged():
    """--cache redis://... reaches the run as the URL, not as a file path."""
    from conveyor.cli.run_args import add_arguments, options_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["in.jsonl", "-o", "o.jsonl", "--cache", "redis://127.0.0.1/0"])
    options = options_from_args(args, {})
    assert options.llm is not None
    assert options.llm.cache == "redis://127.0.0.1/0"


def test_a_second_run_is_answered_from_redis_without_a_call(tmp_path):
    """Answers stored in Redis by one run answer the next: zero calls, hits marked."""
    url, base_url = _url(), f"http://api-{uuid.uuid4().hex}.test"
    ids = write_requests(tmp_path / "in.jsonl", 4)
    first = FakeAPI(answer, latency_s=0.0)
    asyncio.run(_run(tmp_path, base_url, first, url))
    (tmp_path / "out.jsonl").unlink()
    second = FakeAPI(answer, latency_s=0.0)
    batch, result = asyncio.run(_run(tmp_path, base_url, second, url))
    assert (first.calls, second.calls) == (4, 0)
    assert (batch.tally.cache_hits, result.summary.succeeded) == (4, 4)
    assert id_counts(tmp_path / "out.jsonl") == dict.fromkeys(ids, 1)
    records = read_results(tmp_path / "out.jsonl")
    assert all(r["response"]["headers"][CACHE_HEADER] == "hit" for r in records)
    assert records[0]["response"]["body"]["usage"]["total_tokens"] == 15


def test_errors_and_429s_are_not_stored_in_redis(tmp_path):
    """A 429 and a 500 leave no key in Redis: the next run sends exactly those two again."""
    url, base_url = _url(), f"http://api-{uuid.uuid4().hex}.test"
    write_requests(tmp_path / "in.jsonl", 3)

    def script(n: int, body: Any, headers: Any) -> Any:
        content = body["messages"][0]["content"]
        if content == "hello 1":
            return status(429, "slow down")
        if content == "hello 2":
            return status(500, "oops")
        return answer(n, body, headers)

    batch, _ = asyncio.run(_run(tmp_path, base_url, FakeAPI(script, latency_s=0.0), url))
    assert batch._cache is not None
    assert (batch._cache.stored, batch.tally.failed) == (1, 2)
    (tmp_path / "out.jsonl").unlink()
    again = FakeAPI(answer, latency_s=0.0)
    batch, _ = asyncio.run(_run(tmp_path, base_url, again, url))
    assert (again.calls, batch.tally.cache_hits) == (2, 1)


class _Ctx:
    job_id, index, attempt, idempotency_key, tenant = "j", 0, 0, "j/0", "default"


async def _twice(task: HttpJobTask) -> Any:
    """The same chat item through `task` twice; both answers (the task closed after)."""
    item = {
        "custom_id": "a",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "mock-1", "messages": [{"role": "user", "content": "hi"}]},
    }
    first = await task(item, _Ctx())  # type: ignore[arg-type]
    second = await task(item, _Ctx())  # type: ignore[arg-type]
    await task.aclose()
    return first, second


def test_a_job_item_repeated_is_answered_from_redis():
    """The jobs' http task with a redis:// cache: the second identical item is not sent."""
    api = FakeAPI(answer, latency_s=0.0)
    base_url = f"http://api-{uuid.uuid4().hex}.test"
    task = HttpJobTask(base_url=base_url, headers={}, transport=api, cache=open_cache(_url()))

    first, second = asyncio.run(_twice(task))
    assert api.calls == 1
    assert CACHE_HEADER not in first["headers"]
    assert second["headers"][CACHE_HEADER] == "hit"
    assert second["body"] == first["body"]


def test_answers_are_stored_under_the_namespaced_key_with_the_ttl():
    """store() writes conveyor:cache:<key> with the URL's ttl; fetch() reads it back."""
    import redis

    key = uuid.uuid4().hex
    cache = RedisCache(_url())

    async def roundtrip() -> Any:
        await cache.store(key, 200, {"content-type": "application/json"}, {"ok": True})
        got = await cache.fetch(key)
        with pytest.raises(ConfigError, match="only successful"):
            await cache.store(key, 429, {}, {})
        await cache.aclose()
        return got

    assert asyncio.run(roundtrip()) == (
        200,
        {"content-type": "application/json", CACHE_HEADER: "hit"},
        {"ok": True},
    )
    client = redis.Redis.from_url(redis_url())
    try:
        ttl = client.ttl(REDIS_PREFIX + key)
        assert isinstance(ttl, int)
        assert 0 < ttl <= 60
    finally:
        client.delete(REDIS_PREFIX + key)
        client.close()


def test_an_unreachable_redis_stops_the_run_before_it_starts(tmp_path):
    """A run whose cache cannot be reached fails with a ConfigError naming it; nothing sent."""
    write_requests(tmp_path / "in.jsonl", 1)
    api = FakeAPI(answer, latency_s=0.0)
    dead = f"redis://127.0.0.1:{free_port()}/0"
    with pytest.raises(ConfigError, match="response cache"):
        asyncio.run(_run(tmp_path, "http://api.test", api, dead))
    assert api.calls == 0


def test_a_connections_redis_url_gives_its_jobs_task_a_redis_cache():
    """A connection's cache = "redis://..." opens the Redis backend for its http task."""
    from conveyor.jobs import App
    from conveyor.service import Connection
    from conveyor.service.app import add_connections

    app = App()
    connection = Connection(name="mock", base_url="http://api.test", cache="redis://127.0.0.1/0")
    add_connections(app, (connection,), {})
    task = app.get_task("http:mock")
    assert task is not None
    cache = task.fn._cache.backend  # type: ignore[attr-defined]
    assert isinstance(cache, RedisCache)
    asyncio.run(cache.aclose())


def test_redis_holds_the_redacted_answer_under_a_per_tenant_key():
    """An echoed key is in no Redis value, on miss and hit; another tenant's request misses."""
    import redis

    from .test_jobs_cache import ITEM, SECRET, echo

    api = FakeAPI(echo, latency_s=0.0)
    base_url = f"http://api-{uuid.uuid4().hex}.test"
    task = HttpJobTask(
        base_url=base_url,
        headers={"Authorization": f"Bearer {SECRET}"},
        transport=api,
        cache=open_cache(_url()),
    )

    class Ctx:
        job_id, index, attempt, idempotency_key, tenant = "j", 0, 0, "j/0", "acme"

    class OtherCtx(Ctx):
        tenant = "globex"

    request = task._parse(ITEM, 0)
    assert task._cache is not None
    keys = [
        REDIS_PREFIX + task._cache.key(request.method, request.url, request.body, tenant=t)
        for t in ("acme", "globex")
    ]

    async def three() -> Any:
        results = [await task(ITEM, ctx()) for ctx in (Ctx, Ctx, OtherCtx)]  # type: ignore[arg-type]
        await task.aclose()
        return results

    results = asyncio.run(three())
    client = redis.Redis.from_url(redis_url())
    try:
        stored: list[Any] = [client.get(key) for key in keys]
    finally:
        client.delete(*keys)
        client.close()
    assert api.calls == 2  # acme's repeat hit; globex's missed
    assert [CACHE_HEADER in r["headers"] for r in results] == [False, True, False]
    assert all(SECRET not in json.dumps(r) for r in results)
    assert all(isinstance(value, bytes) for value in stored)
    assert all(SECRET.encode() not in value for value in stored)


def test_a_job_item_is_sent_uncached_while_the_caches_redis_cannot_be_reached(caplog):
    """Redis down: the item is answered by the API, not failed; the outage is logged once."""
    import logging

    api = FakeAPI(answer, latency_s=0.0)
    cache = RedisCache(f"redis://:pw-s3cret@127.0.0.1:{free_port()}/0")
    task = HttpJobTask(base_url="http://api.test", headers={}, transport=api, cache=cache)

    with caplog.at_level(logging.WARNING, logger="conveyor.llm"):
        first, second = asyncio.run(_twice(task))
    assert api.calls == 2  # sent each time: nothing could be kept
    assert first["status_code"] == second["status_code"] == 200
    warnings = [r.getMessage() for r in caplog.records if "cannot be reached" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "pw-s3cret" not in warnings[0]
