"""The wrapped anthropic client: its Messages calls go through the shared limiters.

The official ``anthropic`` package, unmodified, against the mock API's Messages route. Most
tests send through the SDK's HTTP seam straight into the mock's handler (`InProcess`), on a
`VirtualClock`: the mock's buckets and the limiter's run in exact virtual seconds, instantly.
Two use the mock over real sockets in real time, never waiting for time to pass (1 ms
latency; a 60 s retry-after no test outlasts): the sync client from threads, and a 429.
"""

import asyncio
import json
import math
from typing import Any

import anthropic
import pytest

from conveyor import ConfigError, Limiter, QuotaExhausted, Retry
from conveyor.llm import limit_anthropic
from conveyor.llm.claude import messages_cost
from conveyor.mockapi import AnthropicLimits, MockAPI, MockConfig
from conveyor.mockapi.app import MockHandler
from conveyor.testing import VirtualClock

from .claude_kit import FAST_RETRY, MODEL, InProcess, in_process, outputs, user

OUT_25 = {"x-mock-output-tokens": "25"}


def against(
    limits: AnthropicLimits, scenario: Any, *, latency_ms: float = 200.0
) -> tuple[Any, MockHandler, InProcess, VirtualClock]:
    """Run `scenario(client_factory)` on a virtual clock against a fresh in-process mock."""
    clock = VirtualClock()
    handler = MockHandler(MockConfig(latency_ms=latency_ms, anthropic=limits, seed=1))
    transport = InProcess(handler, lambda: clock.now)

    async def main() -> Any:
        return await scenario(lambda **options: in_process(transport, **options))

    return clock.run(main()), handler, transport, clock


def test_many_calls_share_the_buckets_with_no_429_and_settle_their_usage():
    """40 calls at once, at the mock's own limits: all answered, no 429, outputs settled.

    The buckets bind in all three dimensions: 40 requests at 2/s, 2,000 input tokens at 100/s,
    1,000 output tokens at 50/s, each about 20 s. Every call reserves its whole max_tokens
    (64) of output until answered; settled at the 25 it used, the run takes the ~20 s the
    limits allow. Unsettled, the output reserved would take 40 x 64 / 50 = 51 s.
    """
    limiter = Limiter(
        "claude",
        requests_per_minute=120,
        input_tokens_per_minute=6_000,
        output_tokens_per_minute=3_000,
        bucket_s=1,
        output_reserve="bound",
    )

    async def scenario(make: Any) -> list[Any]:
        client = limit_anthropic(make(), limiters=[limiter])
        return await asyncio.gather(
            *(
                client.messages.create(
                    model=MODEL, max_tokens=64, messages=user("x" * 200), extra_headers=OUT_25
                )
                for _ in range(40)
            )
        )

    limits = AnthropicLimits(rpm=120, itpm=6_000, otpm=3_000)
    answers, handler, _, clock = against(limits, scenario)
    stats = handler.stats()
    assert all(a.usage.output_tokens == 25 for a in answers)
    assert (stats.ok, stats.rate_limited, limiter.admitted) == (40, 0, 40)
    assert (stats.messages_input_tokens, stats.messages_output_tokens) == (2_000, 1_000)
    assert outputs(limiter) == [25.0] * 40  # every answer settled
    assert 19.0 < clock.now < 21.0  # (40 - 2) / 2 per s + 0.2 s latency = 19.2 s ideal


def test_a_429_from_the_mock_pauses_every_sharer_until_its_retry_after():
    """Output the limiter does not know of runs into debt: the 429 stops all callers.

    The mock allows 600 output tokens a minute (10/s); ours none. Call A produces 200, so the
    mock's output bucket owes 190: B, sent once A is answered, gets a 429 with a retry-after
    of about 19 s. C and D start at 5 s and 10 s; none of them is sent before it is up.
    """
    limiter = Limiter("claude", requests_per_minute=600, bucket_s=1)

    async def scenario(make: Any) -> tuple[Any, ...]:
        client = limit_anthropic(make(), limiters=[limiter], retry=Retry(attempts=2))

        async def call(at: float, output: int) -> Any:
            await asyncio.sleep(at)
            return await client.messages.create(
                model=MODEL,
                max_tokens=200,
                messages=user("hi"),
                extra_headers={"x-mock-output-tokens": str(output)},
            )

        return await asyncio.gather(call(0, 200), call(0.01, 1), call(5, 1), call(10, 1))

    answers, handler, transport, _ = against(AnthropicLimits(otpm=600), scenario, latency_ms=1)
    stats = handler.stats()
    assert [a.usage.output_tokens for a in answers] == [200, 1, 1, 1]
    assert (stats.ok, stats.messages_rate_limited, limiter.pushbacks) == (4, 1, 1)
    first, refused, *later = transport.sent
    assert first == 0.0
    assert refused == pytest.approx(0.01)
    assert limiter.paused_until >= 19.0
    assert len(later) == 3
    assert all(at >= limiter.paused_until for at in later)  # B's retry, C and D


def test_529s_are_retried_with_backoff_and_counted_as_push_back():
    """A third of the calls are answered 529: each is retried until answered; no SDK retry."""
    limiter = Limiter("claude", requests_per_minute=600, bucket_s=1)
    retry = Retry(attempts=10, base_delay_s=0.5, max_delay_s=2.0)

    async def scenario(make: Any) -> list[Any]:
        client = limit_anthropic(make(), limiters=[limiter], retry=retry)
        calls = (
            client.messages.create(model=MODEL, max_tokens=16, messages=user("hi"))
            for _ in range(20)
        )
        return await asyncio.gather(*calls)

    answers, handler, transport, _ = against(AnthropicLimits(overloaded_rate=0.33), scenario)
    stats = handler.stats()
    assert len(answers) == 20
    assert stats.ok == 20
    assert stats.overloaded >= 3
    assert len(transport.sent) == 20 + stats.overloaded  # one retry per 529: ours
    assert limiter.pushbacks == stats.overloaded


def test_the_spend_cap_halts_every_caller_at_once_and_nothing_more_is_sent():
    """Past the cap, the one 429 naming the spend limit fails every caller with QuotaExhausted."""
    limiter = Limiter("claude", requests_per_minute=600, bucket_s=1, concurrency=1)

    async def scenario(make: Any) -> list[Any]:
        client = limit_anthropic(make(), limiters=[limiter], retry=FAST_RETRY)
        calls = (
            client.messages.create(
                model=MODEL, max_tokens=64, messages=user("x" * 20), extra_headers=OUT_25
            )
            for _ in range(6)
        )
        return await asyncio.gather(*calls, return_exceptions=True)

    # Each call spends 5 input and 25 output tokens; the fourth's input would pass 90.
    answers, handler, transport, _ = against(AnthropicLimits(spend_cap_tokens=90), scenario)
    ok = [a for a in answers if isinstance(a, anthropic.types.Message)]
    halted = [a for a in answers if isinstance(a, QuotaExhausted)]
    assert (len(ok), len(halted)) == (3, 3)
    assert all(error is limiter.halted for error in halted)
    assert "spend limit" in str(limiter.halted)
    assert handler.stats().messages_spend_limited == 1
    assert len(transport.sent) == 4  # three answers and the cap's 429: no retry, no more


def test_the_sdks_own_retries_are_off():
    """A 529 reaches our policy after one request; the same client unwrapped sends three."""

    async def scenario(make: Any) -> list[int]:
        limited = limit_anthropic(make(), limiters=[Limiter("c")], retry=Retry(attempts=1))
        errors = []
        for client in (limited, make()):  # the SDK's default: max_retries=2
            try:
                await client.messages.create(model=MODEL, max_tokens=16, messages=user("hi"))
            except anthropic.APIStatusError as exc:
                errors.append(exc.status_code)
        return errors

    errors, _, transport, _ = against(AnthropicLimits(overloaded_rate=1.0), scenario)
    assert errors == [529, 529]
    assert len(transport.sent) == 1 + 3


def test_a_sync_client_from_many_threads_goes_through_the_limiter():
    """anthropic.Anthropic from 8 threads: 8 admissions, at most 2 in flight, usage settled."""
    limiter = Limiter(
        "claude",
        requests_per_minute=600,
        input_tokens_per_minute=60_000,
        output_tokens_per_minute=60_000,
        bucket_s=1,
        concurrency=2,
    )
    limits = AnthropicLimits(rpm=600, itpm=60_000, otpm=60_000)

    async def main() -> Any:
        async with MockAPI(MockConfig(latency_ms=5.0, anthropic=limits)) as api:
            raw = anthropic.Anthropic(api_key="sk-test", base_url=api.base_url)
            client = limit_anthropic(raw, limiters=[limiter], retry=FAST_RETRY)

            def call() -> Any:
                return client.messages.create(
                    model=MODEL, max_tokens=50, messages=user("hello"), extra_headers=OUT_25
                )

            # The sync calls block their threads; the mock keeps answering on this loop.
            answers = await asyncio.gather(*(asyncio.to_thread(call) for _ in range(8)))
            raw.close()
            return answers, api.stats()

    answers, stats = asyncio.run(main())
    assert all(a.content[0].text.startswith("Mock answer") for a in answers)
    assert (limiter.admitted, stats.ok, stats.rate_limited) == (8, 8, 0)
    assert stats.peak_in_flight <= 2
    assert outputs(limiter) == [25.0] * 8


def test_a_429_over_real_sockets_pauses_the_limiter_and_is_not_retried_by_the_sdk():
    """The mock's 429 (retry-after 60 s) pauses the limiter; the mock sees each call once."""
    limiter = Limiter("claude", concurrency=4)  # the API's limit unknown to it

    async def main() -> Any:
        async with MockAPI(MockConfig(latency_ms=1.0, anthropic=AnthropicLimits(rpm=1))) as api:
            raw = anthropic.AsyncAnthropic(api_key="sk-test", base_url=api.base_url)
            client = limit_anthropic(raw, limiters=[limiter], retry=Retry(attempts=1))
            calls = (
                client.messages.create(model=MODEL, max_tokens=16, messages=user("hi"))
                for _ in range(3)
            )
            answers = await asyncio.gather(*calls, return_exceptions=True)
            await raw.close()
            return answers, api.stats(), limiter.paused_until - asyncio.get_running_loop().time()

    answers, stats, paused_for = asyncio.run(main())
    assert sum(isinstance(a, anthropic.RateLimitError) for a in answers) == 2
    assert (stats.requests, stats.ok, stats.rate_limited) == (3, 1, 2)
    assert limiter.pushbacks == 2
    assert 55 < paused_for <= 60  # retry-after: 60 s for the next request at 1 a minute


def test_a_non_client_or_a_single_limiter_is_refused_with_the_fix():
    """Wrong arguments fail at the call, saying what to pass."""
    with pytest.raises(ConfigError, match=r"anthropic\.AsyncAnthropic or anthropic\.Anthropic"):
        limit_anthropic(object(), limiters=[Limiter("a")])
    client = anthropic.AsyncAnthropic(api_key="sk-test", base_url="http://127.0.0.1:9")
    with pytest.raises(ConfigError, match=r"list of conveyor\.Limiter"):
        limit_anthropic(client, limiters=Limiter("a"))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"conveyor\.Retry"):
        limit_anthropic(client, limiters=[], retry=3)  # type: ignore[arg-type]


def test_a_call_that_can_never_fit_the_input_bucket_fails_alone_at_once():
    """A prompt above the input bucket's size is a ConfigError before anything is sent."""
    limiter = Limiter(
        "claude",
        requests_per_minute=600,
        input_tokens_per_minute=6_000,
        output_tokens_per_minute=6_000,
        bucket_s=1,
    )

    async def scenario(make: Any) -> Any:
        client = limit_anthropic(make(), limiters=[limiter], retry=FAST_RETRY)
        with pytest.raises(ConfigError, match="can never be admitted"):
            await client.messages.create(model=MODEL, max_tokens=16, messages=user("x" * 800))
        return await client.messages.create(model=MODEL, max_tokens=16, messages=user("hi"))

    answer, _, transport, _ = against(AnthropicLimits(), scenario)
    assert answer.usage.input_tokens == 1
    assert len(transport.sent) == 1


def test_the_estimate_counts_the_system_prompt_and_tools():
    """The input estimate is what the mock counts: system prompt and messages, chars / 4."""
    tools = [
        {
            "name": "get_weather",
            "description": "The weather in a city.",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        }
    ]
    plain = messages_cost({"max_tokens": 64, "messages": user("x" * 40)})
    full = messages_cost(
        {"max_tokens": 64, "system": "y" * 40, "tools": tools, "messages": user("x" * 40)}
    )
    assert plain == {"tokens": 74.0, "input_tokens": 10.0, "output_tokens": 64.0}
    chars = (
        40 + 40 + len(json.dumps(tools, separators=(",", ":")))
    )  # the system prompt, the message, the tools' JSON
    assert full == {
        "tokens": math.ceil(chars / 4) + 64.0,
        "input_tokens": math.ceil(chars / 4),
        "output_tokens": 64.0,
    }


def test_the_answers_rate_limit_headers_are_read_and_a_lower_limit_adopted():
    """The mock states 120 requests and 6,000 output tokens a minute; ours said more."""
    limiter = Limiter(
        "claude",
        requests_per_minute=600,
        input_tokens_per_minute=60_000,
        output_tokens_per_minute=60_000,
        bucket_s=1,
    )

    async def scenario(make: Any) -> Any:
        client = limit_anthropic(make(), limiters=[limiter], retry=FAST_RETRY)
        return await client.messages.create(model=MODEL, max_tokens=16, messages=user("hi"))

    against(AnthropicLimits(rpm=120, itpm=60_000, otpm=6_000), scenario)
    assert limiter.adopted == {"requests": (600.0, 120.0), "output_tokens": (60_000.0, 6_000.0)}
