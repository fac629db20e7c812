"""POST /v1/messages end to end, served from the test's own loop on 127.0.0.1.

Real sockets and so real time, but no test waits for time to pass: latencies are 1 ms and
every rate limit is one the test exhausts at once and never outlasts (1 RPM refills in 60 s).
The load test (test_messages_load.py) runs the handler itself on a virtual clock instead.
"""

import asyncio
import math
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar, cast

import aiohttp
import pytest

from conveyor.mockapi import AnthropicLimits, Faults, MockAPI, MockConfig, MockStats
from conveyor.policy.classify import classify

T = TypeVar("T")
Session = aiohttp.ClientSession

MESSAGES = "/v1/messages"
HELLO = {
    "model": "claude-mock",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "Say hello, twice."}],
}
TIER_1 = AnthropicLimits(rpm=50, itpm=30_000, otpm=8_000)


@dataclass
class Answer:
    status: int
    headers: Mapping[str, str]
    body: Any


def against(
    limits: AnthropicLimits,
    scenario: Callable[[MockAPI, Session], Awaitable[T]],
    *,
    faults: Faults | None = None,
) -> T:
    """Run `scenario` against a fresh mock API with these Messages limits, on a fresh loop."""
    config = MockConfig(latency_ms=1.0, anthropic=limits, faults=faults or Faults())

    async def main() -> T:
        async with MockAPI(config) as api, aiohttp.ClientSession() as session:
            return await scenario(api, session)

    return asyncio.run(main())


async def post(
    session: Session, api: MockAPI, payload: Any = HELLO, path: str = MESSAGES, **kwargs: Any
) -> Answer:
    async with session.post(api.base_url + path, json=payload, **kwargs) as response:
        return Answer(response.status, response.headers, await response.json())


def tokens(input_tokens: int, output_tokens: int) -> dict[str, str]:
    return {"x-mock-input-tokens": str(input_tokens), "x-mock-output-tokens": str(output_tokens)}


def test_a_message_has_anthropics_shape_usage_and_headers():
    """A 200 is a message object with usage, a request-id and every ratelimit header."""

    async def scenario(api: MockAPI, session: Session) -> tuple[Answer, MockStats]:
        return await post(session, api), api.stats()

    answer, stats = against(TIER_1, scenario)
    assert answer.status == 200
    body = answer.body
    assert (body["type"], body["role"], body["model"]) == ("message", "assistant", "claude-mock")
    assert body["id"].startswith("msg_")
    assert body["content"][0]["type"] == "text"
    assert (body["stop_reason"], body["stop_sequence"]) == ("end_turn", None)
    usage = body["usage"]
    assert usage["input_tokens"] == math.ceil(len("Say hello, twice.") / 4)
    assert (usage["cache_creation_input_tokens"], usage["cache_read_input_tokens"]) == (0, 0)
    headers = answer.headers
    assert headers["request-id"].startswith("req_")
    assert headers["anthropic-ratelimit-requests-limit"] == "50"
    assert headers["anthropic-ratelimit-requests-remaining"] == "0"  # one a second: taken
    assert headers["anthropic-ratelimit-input-tokens-limit"] == "30000"
    assert headers["anthropic-ratelimit-input-tokens-remaining"] == "30000"  # 29,700, rounded
    assert headers["anthropic-ratelimit-output-tokens-limit"] == "8000"
    assert headers["anthropic-ratelimit-tokens-limit"] == "38000"
    for family in ("requests", "input-tokens", "output-tokens", "tokens"):
        reset = headers[f"anthropic-ratelimit-{family}-reset"]
        assert reset.endswith("Z")
        assert datetime.fromisoformat(reset).tzinfo is not None
    assert (stats.ok, stats.messages_admitted, stats.messages_input_tokens) == (1, 1, 5)
    assert stats.messages_output_tokens == usage["output_tokens"]
    assert stats.spent_tokens == 5 + usage["output_tokens"]
    assert (stats.chat_admitted, stats.tokens_admitted) == (0, 0)


def test_past_the_requests_bucket_the_answer_is_a_429_with_retry_after_naming_the_limit():
    """1 RPM holds one request: the next is a 429, retry-after 60 s, 'requests' named."""

    async def scenario(api: MockAPI, session: Session) -> tuple[list[Answer], MockStats]:
        return [await post(session, api) for _ in range(2)], api.stats()

    (first, limited), stats = against(AnthropicLimits(rpm=1), scenario)
    assert (first.status, limited.status) == (200, 429)
    assert limited.body["type"] == "error"
    assert limited.body["error"]["type"] == "rate_limit_error"
    assert "1 requests per minute" in limited.body["error"]["message"]
    assert limited.headers["retry-after"] == "60"
    assert limited.headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert limited.headers["request-id"] == limited.body["request_id"]
    assert (stats.messages_admitted, stats.messages_rate_limited, stats.rate_limited) == (1, 1, 1)


def test_the_429_names_every_limit_it_hit():
    """Output in debt and requests used up: both are named; the wait is the longer one."""

    async def scenario(api: MockAPI, session: Session) -> Answer:
        await post(session, api, headers=tokens(10, 64))  # output: 1 held, 64 taken
        return await post(session, api, headers=tokens(10, 1))

    limited = against(AnthropicLimits(rpm=1, otpm=1), scenario)
    message = limited.body["error"]["message"]
    assert "1 requests per minute and 1 output tokens per minute" in message
    assert int(limited.headers["retry-after"]) >= 63 * 60  # the debt of 63 at 1 a minute


def test_input_that_can_never_fit_is_a_400_not_a_429():
    """Input above the input bucket's capacity is a client error with no retry-after."""

    async def scenario(api: MockAPI, session: Session) -> tuple[Answer, MockStats]:
        return await post(session, api, headers={"x-mock-input-tokens": "501"}), api.stats()

    answer, stats = against(TIER_1, scenario)  # 30,000 ITPM over 1 s holds 500
    assert answer.status == 400
    assert answer.body["error"]["type"] == "invalid_request_error"
    assert "501 input tokens can never fit" in answer.body["error"]["message"]
    assert "raise --itpm or --burst." in answer.body["error"]["message"]
    assert "retry-after" not in answer.headers
    assert "anthropic-ratelimit-input-tokens-remaining" in answer.headers
    assert (stats.bad_requests, stats.rate_limited, stats.messages_admitted) == (1, 0, 0)


def test_a_malformed_request_is_a_400_in_anthropics_shape():
    """A missing max_tokens is refused with invalid_request_error, headers included."""

    async def scenario(api: MockAPI, session: Session) -> Answer:
        return await post(session, api, {"model": "m", "messages": HELLO["messages"]})

    answer = against(TIER_1, scenario)
    assert answer.status == 400
    assert answer.body["error"]["type"] == "invalid_request_error"
    assert answer.body["error"]["message"].startswith("max_tokens")
    assert "anthropic-ratelimit-requests-limit" in answer.headers


def test_overloaded_requests_are_529s_that_produce_nothing():
    """overloaded_rate=1: every admitted request is a 529 at once; no output taken or spent."""

    async def scenario(api: MockAPI, session: Session) -> tuple[Answer, MockStats]:
        return await post(session, api), api.stats()

    answer, stats = against(AnthropicLimits(overloaded_rate=1.0), scenario)
    assert answer.status == 529
    assert answer.body["type"] == "error"
    assert answer.body["error"] == {"type": "overloaded_error", "message": "Overloaded"}
    assert "request-id" in answer.headers
    assert (stats.overloaded, stats.messages_admitted, stats.ok) == (1, 1, 0)
    assert (stats.messages_input_tokens, stats.messages_output_tokens, stats.spent_tokens) == (
        5,
        0,
        0,
    )


def test_a_seeded_overloaded_draw_repeats_and_leaves_the_fault_draw_alone():
    """With a seed the 529s fall on the same requests every run, and after a reset."""
    config = MockConfig(latency_ms=1.0, anthropic=AnthropicLimits(overloaded_rate=0.5), seed=4)

    async def main() -> tuple[list[int], list[int]]:
        async with MockAPI(config) as api, aiohttp.ClientSession() as session:
            first = [(await post(session, api)).status for _ in range(12)]
            api.reset()
            return first, [(await post(session, api)).status for _ in range(12)]

    first, second = asyncio.run(main())
    rng = random.Random("overloaded-4")
    assert first == second == [529 if rng.random() < 0.5 else 200 for _ in range(12)]


def test_the_fault_draw_applies_to_the_messages_route():
    """fail_rate=1: a 500 api_error in Anthropic's shape, with the headers, and no output."""

    async def scenario(api: MockAPI, session: Session) -> tuple[Answer, MockStats]:
        return await post(session, api), api.stats()

    answer, stats = against(TIER_1, scenario, faults=Faults(fail_rate=1.0))
    assert answer.status == 500
    assert answer.body["error"]["type"] == "api_error"
    assert "anthropic-ratelimit-output-tokens-remaining" in answer.headers
    assert (stats.errors_500, stats.messages_output_tokens) == (1, 0)


class SdkError(Exception):
    """An HTTP error as the SDKs carry it (see tests/policy/test_classify.py)."""

    def __init__(self, answer: Answer) -> None:
        super().__init__(f"HTTP {answer.status}")
        self.status_code = answer.status
        self.body = answer.body
        self.headers = dict(answer.headers)


def test_the_spend_cap_is_a_429_without_retry_after_that_classify_calls_quota():
    """Past the cap every request is a 429 naming the spend limit, and classify stops on it."""

    async def scenario(api: MockAPI, session: Session) -> tuple[list[Answer], MockStats]:
        answers = [await post(session, api, headers=tokens(10, 5)) for _ in range(3)]
        return answers, api.stats()

    (first, capped, again), stats = against(AnthropicLimits(spend_cap_tokens=20), scenario)
    assert first.status == 200  # 15 spent: 10 more input would pass 20
    for answer in (capped, again):
        assert answer.status == 429
        assert answer.body["error"]["type"] == "rate_limit_error"
        assert "spend limit" in answer.body["error"]["message"]
        assert "retry-after" not in answer.headers
    verdict = classify(SdkError(capped), now_wall_s=0.0)
    assert verdict.kind == "quota"
    assert (stats.ok, stats.messages_spend_limited, stats.spent_tokens) == (1, 2, 15)


def test_classify_reads_the_mocks_rate_limit_and_overload_as_retryable():
    """The bucket's 429 is rate_limited with its retry-after; the 529 is overloaded."""

    async def scenario(api: MockAPI, session: Session) -> list[Answer]:
        return [await post(session, api) for _ in range(2)]

    _, limited = against(AnthropicLimits(rpm=1), scenario)
    verdict = classify(SdkError(limited), now_wall_s=0.0)
    assert (verdict.kind, verdict.retry_after_s) == ("rate_limited", 60.0)
    (overloaded,) = against(
        AnthropicLimits(overloaded_rate=1.0), lambda api, s: asyncio.gather(post(s, api))
    )
    assert classify(SdkError(overloaded), now_wall_s=0.0).kind == "overloaded"


def test_reset_refills_the_buckets_and_forgets_the_spend():
    """POST /stats/reset: full buckets and nothing spent, so a run starts equal."""

    async def scenario(api: MockAPI, session: Session) -> list[int]:
        statuses = [(await post(session, api, headers=tokens(5, 5))).status for _ in range(2)]
        async with session.post(api.base_url + "/stats/reset"):
            pass
        return [*statuses, (await post(session, api, headers=tokens(5, 5))).status]

    assert against(AnthropicLimits(rpm=1, spend_cap_tokens=10), scenario) == [200, 429, 200]


def test_unknown_messages_paths_and_methods_answer_in_anthropics_shape():
    """/v1/messages/... is a not_found_error 404; GET /v1/messages a 405; neither is counted."""

    async def scenario(api: MockAPI, session: Session) -> tuple[Answer, Answer, MockStats]:
        async with session.get(api.base_url + MESSAGES + "/batches") as response:
            missing = Answer(response.status, response.headers, await response.json())
        async with session.get(api.base_url + MESSAGES) as response:
            wrong = Answer(response.status, response.headers, await response.json())
        return missing, wrong, api.stats()

    missing, wrong, stats = against(TIER_1, scenario)
    assert (missing.status, missing.body["error"]["type"]) == (404, "not_found_error")
    assert (wrong.status, wrong.body["error"]["type"]) == (405, "invalid_request_error")
    assert stats == MockStats()


def test_both_routes_count_per_route_in_the_stats_route():
    """GET /stats keeps its fields and adds per-route counts for chat, echo and messages."""
    config = MockConfig(latency_ms=1.0, rpm=1, anthropic=AnthropicLimits(rpm=1))
    chat = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}

    async def main() -> dict[str, Any]:
        async with MockAPI(config) as api, aiohttp.ClientSession() as session:
            for path, payload in (("/v1/chat/completions", chat), (MESSAGES, HELLO)):
                for _ in range(2):
                    await post(session, api, payload, path=path)
            async with session.get(api.base_url + "/stats") as response:
                return cast("dict[str, Any]", await response.json())

    stats = asyncio.run(main())
    assert (stats["requests"], stats["ok"], stats["rate_limited"]) == (4, 2, 2)
    assert (stats["chat_admitted"], stats["chat_rate_limited"]) == (1, 1)
    assert (stats["messages_admitted"], stats["messages_rate_limited"]) == (1, 1)
    assert (stats["echo_admitted"], stats["echo_rate_limited"], stats["overloaded"]) == (0, 0, 0)


def test_openai_headers_state_per_minute_figures():
    """With a 1 s window, 600 RPM reads as limit 600 and 540 a minute left after one request.

    (Before, the headers said limit 10 and remaining 9: the share of one window.)
    """
    chat = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}

    config = MockConfig(latency_ms=1.0, rpm=600, tpm=60_000, window_s=1.0)

    async def main() -> Answer:
        async with MockAPI(config) as api, aiohttp.ClientSession() as session:
            return await post(session, api, chat, path="/v1/chat/completions")

    headers = asyncio.run(main()).headers
    assert headers["x-ratelimit-limit-requests"] == "600"
    assert headers["x-ratelimit-remaining-requests"] == "540"
    assert headers["x-ratelimit-limit-tokens"] == "60000"
    assert headers["x-ratelimit-remaining-tokens"] == str((1000 - 1 - 16) * 60)
    assert headers["x-ratelimit-reset-requests"] == "1s"


@pytest.mark.parametrize("limits", [TIER_1, AnthropicLimits()])
def test_headers_appear_only_for_the_limits_set(limits):
    """Without limits the route answers with a request-id and no ratelimit headers."""

    async def scenario(api: MockAPI, session: Session) -> Answer:
        return await post(session, api)

    headers = against(limits, scenario).headers
    assert "request-id" in headers
    assert ("anthropic-ratelimit-requests-limit" in headers) == (limits.rpm is not None)
