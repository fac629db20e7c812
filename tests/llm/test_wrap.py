"""The wrapped openai client: its chat calls go through the shared limiters.

Two kinds of test. Against the project's mock API (real sockets, real time, never waiting for
time to pass: 1 ms latency, 60 s windows no test outlasts, retries with 1 ms backoff), the
official ``openai`` package, unmodified, with ``base_url`` at the mock. And with the SDK's own
HTTP seam (an ``httpx2.MockTransport``) for answers the mock does not give: an exhausted
quota, a cut-off answer.
"""

import asyncio
import json
import time
from typing import Any

import httpx2
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from conveyor import ConfigError, InvalidAnswer, Limiter, QuotaExhausted, Retry
from conveyor.llm import AnswerCheck, limit_openai
from conveyor.mockapi import MockAPI, MockConfig

MESSAGES: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "Extract the tracking number from: 1Z999AA10123456784"}
]
FAST_RETRY = Retry(attempts=3, base_delay_s=0.001, max_delay_s=0.001)


def _client(base_url: str, **kwargs) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key="sk-test", base_url=f"{base_url}/v1", **kwargs)


def test_every_call_goes_through_the_limiter_and_settles_its_usage():
    """N calls: N admissions, no 429, and the token window holds the real usage."""
    limiter = Limiter("openai", requests_per_minute=600, tokens_per_minute=100_000, window_s=60)

    async def main() -> Any:
        async with MockAPI(MockConfig(latency_ms=1.0, rpm=600, window_s=60)) as api:
            raw = _client(api.base_url)
            client = limit_openai(raw, limiters=[limiter], retry=FAST_RETRY)
            answers = await asyncio.gather(
                *(
                    client.chat.completions.create(
                        model="gpt-4o-mini", messages=MESSAGES, max_tokens=50
                    )
                    for _ in range(8)
                )
            )
            await raw.close()
            return answers, api.stats()

    answers, stats = asyncio.run(main())
    assert all(a.choices[0].message.content.startswith("Mock answer") for a in answers)
    assert (limiter.admitted, stats.ok, stats.rate_limited) == (8, 8, 0)
    usage = answers[0].usage
    assert usage is not None
    # The estimate (14 prompt + 50 max_tokens) is above the usage and is not refunded by
    # default: OpenAI charges max_tokens up front.
    assert usage.total_tokens < 64


def test_a_429_from_the_api_pauses_the_shared_limiter_and_the_sdk_does_not_retry_behind_it():
    """The mock's 429 (Retry-After) reaches the limiter; the SDK's own retries are off."""
    limiter = Limiter("openai", concurrency=4)  # the API's limit unknown to it

    async def main() -> Any:
        async with MockAPI(MockConfig(latency_ms=1.0, rpm=2, window_s=60)) as api:
            raw = _client(api.base_url)
            client = limit_openai(raw, limiters=[limiter], retry=Retry(attempts=1))
            # Three at once, where the API allows two a minute: one is refused.
            answers = await asyncio.gather(
                *(client.chat.completions.create(model="m", messages=MESSAGES) for _ in range(3)),
                return_exceptions=True,
            )
            await raw.close()
            paused_for = limiter.paused_until - asyncio.get_running_loop().time()
            return answers, api.stats(), paused_for

    answers, stats, paused_for = asyncio.run(main())
    assert sum(isinstance(a, openai.RateLimitError) for a in answers) == 1
    assert (stats.ok, stats.rate_limited) == (2, 1)  # one 429: nobody retried it
    assert limiter.pushbacks == 1
    assert 50 < paused_for <= 60  # Retry-After: the window frees a slot 60 s after the first


def _transport(answers: list[tuple[int, dict[str, Any]]]) -> httpx2.MockTransport:
    calls = iter(answers)

    def handler(request: httpx2.Request) -> httpx2.Response:
        status, body = next(calls)
        return httpx2.Response(status, json=body)

    return httpx2.MockTransport(handler)


def _completion(finish_reason: str, content: str = "{}") -> dict[str, Any]:
    return {
        "id": "c",
        "object": "chat.completion",
        "created": 0,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": finish_reason,
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
    }


QUOTA = {"error": {"message": "You exceeded your current quota.", "type": "insufficient_quota",
                   "param": None, "code": "insufficient_quota"}}  # fmt: skip


def test_an_exhausted_quota_halts_the_limiter_for_every_caller():
    """A 429 insufficient_quota raises QuotaExhausted, is not retried, and halts the limiter."""
    limiter = Limiter("openai", requests_per_minute=600)
    http = httpx2.AsyncClient(transport=_transport([(429, QUOTA)]))

    async def main() -> Any:
        client = limit_openai(
            _client("http://api.test", http_client=http), limiters=[limiter], retry=FAST_RETRY
        )
        errors = []
        for _ in range(2):
            try:
                await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
            except QuotaExhausted as exc:
                errors.append(exc)
        return errors

    first, second = asyncio.run(main())
    assert "You exceeded your current quota." in str(first)
    assert first is limiter.halted  # the call that met it raises the limiter's error too
    assert second is limiter.halted  # refused at admission: the transport saw one call only
    assert limiter.admitted == 1


def test_a_cut_off_answer_is_retried_through_the_limiter():
    """With a check, finish_reason length is retried; every attempt takes a slot."""
    limiter = Limiter("openai", requests_per_minute=600)
    answers = [(200, _completion("length")), (200, _completion("stop"))]
    http = httpx2.AsyncClient(transport=_transport(answers))

    async def main() -> Any:
        client = limit_openai(
            _client("http://api.test", http_client=http),
            limiters=[limiter],
            retry=FAST_RETRY,
            validate=AnswerCheck(finish_reasons=frozenset({"stop"})),
        )
        return await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    answer = asyncio.run(main())
    assert answer.choices[0].finish_reason == "stop"
    assert limiter.admitted == 2


def test_a_persistent_bad_answer_raises_invalid_answer():
    """After the last attempt the check's InvalidAnswer is raised, with its reason."""
    answers = [(200, _completion("stop", "not json"))] * 3
    http = httpx2.AsyncClient(transport=_transport(answers))

    async def main() -> Any:
        client = limit_openai(
            _client("http://api.test", http_client=http),
            limiters=[Limiter("openai")],
            retry=FAST_RETRY,
            validate=AnswerCheck(json=True),
        )
        await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    with pytest.raises(InvalidAnswer) as caught:
        asyncio.run(main())
    assert caught.value.reason == "not_json"


def test_a_non_client_or_a_single_limiter_is_refused_with_the_fix():
    """Wrong arguments fail at the call, saying what to pass."""
    with pytest.raises(ConfigError, match=r"AsyncOpenAI or openai\.OpenAI"):
        limit_openai(object(), limiters=[Limiter("a")])
    with pytest.raises(ConfigError, match=r"list of conveyor\.Limiter"):
        limit_openai(_client("http://x"), limiters=Limiter("a"))  # type: ignore[arg-type]


def test_other_client_attributes_are_the_clients_own():
    """Only chat.completions.create is replaced; the rest is the client's."""
    client = _client("http://api.test")
    limited = limit_openai(client, limiters=[Limiter("a")])
    assert limited.files is client.files
    assert limited.base_url == client.base_url
    assert json.dumps(limited.chat.completions.create.__doc__ is not None)


def test_a_sync_clients_calls_from_many_threads_go_through_the_limiter():
    """openai.OpenAI from 8 threads: 8 admissions, at most 2 in flight, usage settled, no 429."""
    limiter = Limiter(
        "openai", requests_per_minute=600, tokens_per_minute=100_000, concurrency=2, window_s=60
    )

    async def main() -> Any:
        async with MockAPI(MockConfig(latency_ms=5.0, rpm=600, window_s=60)) as api:
            raw = openai.OpenAI(api_key="sk-test", base_url=f"{api.base_url}/v1")
            client = limit_openai(raw, limiters=[limiter], retry=FAST_RETRY)

            def call() -> Any:
                return client.chat.completions.create(
                    model="gpt-4o-mini", messages=MESSAGES, max_tokens=50
                )

            # The sync calls block their threads; the mock keeps answering on this loop.
            answers = await asyncio.gather(*(asyncio.to_thread(call) for _ in range(8)))
            raw.close()
            return answers, api.stats()

    answers, stats = asyncio.run(main())
    assert all(a.choices[0].message.content.startswith("Mock answer") for a in answers)
    assert (limiter.admitted, stats.ok, stats.rate_limited) == (8, 8, 0)
    assert stats.peak_in_flight <= 2


def test_a_429_to_a_sync_client_pauses_the_shared_limiter():
    """The mock's 429 (Retry-After) reaches the limiter through the bridge; no SDK retry."""
    limiter = Limiter("openai", concurrency=4)

    async def main() -> Any:
        async with MockAPI(MockConfig(latency_ms=1.0, rpm=2, window_s=60)) as api:
            raw = openai.OpenAI(api_key="sk-test", base_url=f"{api.base_url}/v1")
            client = limit_openai(raw, limiters=[limiter], retry=Retry(attempts=1))

            def call() -> Any:
                try:
                    return client.chat.completions.create(model="m", messages=MESSAGES)
                except openai.RateLimitError as exc:
                    return exc

            # Three at once, from three threads, where the API allows two a minute.
            answers = await asyncio.gather(*(asyncio.to_thread(call) for _ in range(3)))
            raw.close()
            # The bridge's loop and this one both read the monotonic clock.
            return answers, api.stats(), limiter.paused_until - time.monotonic()

    answers, stats, paused_for = asyncio.run(main())
    assert sum(isinstance(a, openai.RateLimitError) for a in answers) == 1
    assert (stats.ok, stats.rate_limited) == (2, 1)  # one 429: nobody retried it
    assert limiter.pushbacks == 1
    assert 50 < paused_for <= 60  # Retry-After: the window frees a slot 60 s after the first
