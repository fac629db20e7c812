"""The mock API end to end, served from the test's own event loop on 127.0.0.1.

These tests use real sockets and so real time, but never wait for time to pass: latencies are
1 ms, rate limits use 60 s windows that no test outlasts, and the one test that needs a client
timeout says why. Waiting for the server to reach a state polls its counters, bounded.
"""

import asyncio
import math
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import pytest

from conveyor.errors import ConfigError
from conveyor.mockapi import Faults, MockAPI, MockConfig, MockStats

T = TypeVar("T")
Session = aiohttp.ClientSession

CHAT = "/v1/chat/completions"
HELLO = {"model": "mock-1", "messages": [{"role": "user", "content": "Say hello, twice."}]}
FAST = MockConfig(latency_ms=1.0)


@dataclass
class Answer:
    status: int
    headers: Mapping[str, str]
    body: Any


def against(config: MockConfig, scenario: Callable[[MockAPI, Session], Awaitable[T]]) -> T:
    """Run `scenario` against a fresh mock API and client session, on a fresh loop."""

    async def main() -> T:
        async with MockAPI(config) as api, aiohttp.ClientSession() as session:
            return await scenario(api, session)

    return asyncio.run(main())


async def until(api: MockAPI, condition: Callable[[MockStats], bool]) -> MockStats:
    """Yield to the loop until the server's counters satisfy `condition` (at most 5 s)."""
    async with asyncio.timeout(5.0):
        while not condition(stats := api.stats()):  # noqa: ASYNC110 - the server has no event to wait on
            await asyncio.sleep(0)
    return stats


async def post(
    session: Session, api: MockAPI, path: str = CHAT, payload: Any = HELLO, **kwargs: Any
) -> Answer:
    """POST `payload` as JSON and read the answer."""
    async with session.post(api.base_url + path, json=payload, **kwargs) as response:
        return Answer(response.status, response.headers, await response.json())


def test_chat_answer_has_the_openai_shape_and_usage():
    """A chat request gets a chat.completion with a deterministic answer and exact usage."""

    async def scenario(api: MockAPI, session: Session) -> tuple[Answer, Answer]:
        return await post(session, api), await post(session, api)

    answer, again = against(FAST, scenario)
    assert answer.status == 200
    assert answer.headers["content-type"] == "application/json"
    body = answer.body
    assert body["object"] == "chat.completion"
    assert body["model"] == "mock-1"
    assert body["id"].startswith("chatcmpl-")
    assert isinstance(body["created"], int)
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == again.body["choices"][0]["message"]["content"]
    assert choice["finish_reason"] == "stop"
    usage = body["usage"]
    assert usage["prompt_tokens"] == math.ceil(len("Say hello, twice.") / 4)
    assert 0 < usage["completion_tokens"] <= 16
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_requests_over_the_share_get_429_with_openai_headers():
    """Past the request share the answer is 429 with Retry-After and every x-ratelimit header."""

    async def scenario(api: MockAPI, session: Session) -> tuple[list[Answer], MockStats]:
        return [await post(session, api) for _ in range(3)], api.stats()

    answers, stats = against(MockConfig(latency_ms=1.0, rpm=2, tpm=1_000), scenario)
    assert [a.status for a in answers] == [200, 200, 429]
    first, limited = answers[0].headers, answers[2].headers
    assert first["x-ratelimit-limit-requests"] == "2"
    assert first["x-ratelimit-remaining-requests"] == "1"
    assert first["x-ratelimit-reset-requests"] == "1m0s"  # the whole window, from admission
    assert first["x-ratelimit-limit-tokens"] == "1000"
    assert int(first["x-ratelimit-remaining-tokens"]) == 1000 - 5 - 16
    assert first["x-ratelimit-reset-tokens"] == "1m0s"
    assert limited["x-ratelimit-remaining-requests"] == "0"
    # The first admission expires 60 s after it was made, milliseconds ago (5 s of slack).
    assert 55_000 < int(limited["retry-after-ms"]) <= 60_000
    assert limited["retry-after"] == "60"
    error = answers[2].body["error"]
    assert (error["type"], error["code"]) == ("requests", "rate_limit_exceeded")
    assert (stats.ok, stats.rate_limited, stats.tokens_admitted) == (2, 1, 42)


def test_tokens_over_the_share_get_429_and_the_cost_header_sets_the_cost():
    """x-mock-cost sets a request's tokens; a request past the token share gets 429."""

    async def scenario(api: MockAPI, session: Session) -> tuple[Answer, Answer, MockStats]:
        cost = {"x-mock-cost": "60"}
        first = await post(session, api, headers=cost)
        return first, await post(session, api, headers=cost), api.stats()

    first, limited, stats = against(MockConfig(latency_ms=1.0, tpm=100), scenario)
    assert first.status == 200
    assert first.headers["x-ratelimit-remaining-tokens"] == "40"
    assert "x-ratelimit-limit-requests" not in first.headers
    assert limited.status == 429
    assert limited.body["error"]["type"] == "tokens"
    assert limited.headers["retry-after"] == "60"
    assert stats.tokens_admitted == 60


def test_a_cost_above_the_token_share_is_a_400_not_a_429():
    """A request that could never fit the token share is refused as a client error."""

    async def scenario(api: MockAPI, session: Session) -> tuple[Answer, MockStats]:
        return await post(session, api, headers={"x-mock-cost": "101"}), api.stats()

    answer, stats = against(MockConfig(latency_ms=1.0, tpm=100), scenario)
    assert answer.status == 400
    assert answer.body["error"]["code"] == "request_too_large"
    assert "101 tokens" in answer.body["error"]["message"]
    assert "retry-after" not in answer.headers
    assert (stats.bad_requests, stats.rate_limited, stats.tokens_admitted) == (1, 0, 0)


def test_concurrent_requests_get_exactly_the_share():
    """Thirty requests at once against a share of ten: ten answered, twenty refused."""

    async def scenario(api: MockAPI, session: Session) -> tuple[list[int], MockStats]:
        answers = await asyncio.gather(*(post(session, api) for _ in range(30)))
        return sorted(a.status for a in answers), api.stats()

    statuses, stats = against(MockConfig(latency_ms=1.0, rpm=10), scenario)
    assert statuses == [200] * 10 + [429] * 20
    assert (stats.requests, stats.ok, stats.rate_limited) == (30, 10, 20)


def test_bad_json_is_a_400_with_an_openai_error_object():
    """A body that is not JSON gets 400 with {"error": {message, type, code}}."""

    async def scenario(api: MockAPI, session: Session) -> tuple[Answer, MockStats]:
        async with session.post(api.base_url + CHAT, data=b"{oops") as response:
            answer = Answer(response.status, response.headers, await response.json())
        return answer, api.stats()

    answer, stats = against(FAST, scenario)
    assert answer.status == 400
    assert answer.body["error"]["type"] == "invalid_request_error"
    assert answer.body["error"]["code"] == "invalid_json"
    assert answer.body["error"]["message"]
    assert (stats.requests, stats.bad_requests) == (1, 1)


def test_a_missing_model_is_a_400_naming_the_parameter():
    """A chat request without a model is refused, naming the `model` parameter."""

    async def scenario(api: MockAPI, session: Session) -> Answer:
        return await post(session, api, payload={"messages": HELLO["messages"]})

    answer = against(FAST, scenario)
    assert (answer.status, answer.body["error"]["param"]) == (400, "model")


def test_fail_rate_one_answers_500():
    """With fail_rate=1 every admitted request gets a 500 error object, with rate-limit headers."""

    async def scenario(api: MockAPI, session: Session) -> tuple[Answer, MockStats]:
        return await post(session, api), api.stats()

    config = MockConfig(latency_ms=1.0, rpm=600, faults=Faults(fail_rate=1.0))
    answer, stats = against(config, scenario)
    assert answer.status == 500
    assert answer.body["error"]["type"] == "server_error"
    assert answer.headers["x-ratelimit-remaining-requests"] == "599"
    assert (stats.errors_500, stats.ok) == (1, 0)


def test_drop_rate_one_closes_the_connection():
    """With drop_rate=1 the client sees the server disconnect without an answer."""

    async def scenario(api: MockAPI, session: Session) -> MockStats:
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await post(session, api, "/v1/echo", {"n": 1})
        return await until(api, lambda s: s.in_flight == 0)

    stats = against(MockConfig(latency_ms=1.0, faults=Faults(drop_rate=1.0)), scenario)
    assert (stats.dropped, stats.ok) == (1, 0)


def test_a_hung_request_ends_when_the_client_gives_up():
    """A hung request is never answered, and its handler ends when the client times out.

    Real time: the client's 0.5 s timeout is what ends the hang; the test takes that long (the
    server draws the hang within milliseconds; half a second leaves room for a loaded machine).
    """

    async def scenario(api: MockAPI, session: Session) -> MockStats:
        with pytest.raises(TimeoutError):
            await post(session, api, timeout=aiohttp.ClientTimeout(total=0.5))
        return await until(api, lambda s: s.in_flight == 0)

    stats = against(MockConfig(latency_ms=1.0, faults=Faults(hang_rate=1.0)), scenario)
    assert (stats.hung, stats.ok, stats.peak_in_flight) == (1, 0, 1)


def test_shutdown_releases_every_hung_request():
    """Leaving the block ends all hung requests at once: their clients see a disconnect."""
    config = MockConfig(latency_ms=1.0, faults=Faults(hang_rate=1.0, hang_s=300.0))

    async def main() -> tuple[MockStats, list[BaseException | Answer], MockStats]:
        async with aiohttp.ClientSession() as session:
            async with MockAPI(config) as api:
                calls = [asyncio.create_task(post(session, api)) for _ in range(10)]
                during = await until(api, lambda s: s.hung == 10)
            async with asyncio.timeout(5.0):
                results = await asyncio.gather(*calls, return_exceptions=True)
            return during, results, api.stats()

    during, results, after = asyncio.run(main())
    assert (during.in_flight, during.peak_in_flight) == (10, 10)
    assert all(isinstance(r, aiohttp.ClientConnectionError) for r in results)
    assert after.in_flight == 0


def test_duplicates_after_success_count_repeated_ids():
    """A request id already answered 200 counts as a duplicate; one that only failed does not."""
    first_fails = random.Random(3).random() < 0.5

    async def scenario(api: MockAPI, session: Session) -> tuple[list[int], MockStats]:
        keys = ("x-request-id", "Idempotency-Key", "x-request-id")
        statuses = [(await post(session, api, headers={key: "job-1"})).status for key in keys]
        return statuses, api.stats()

    config = MockConfig(latency_ms=1.0, faults=Faults(fail_rate=0.5), seed=3)
    statuses, stats = against(config, scenario)
    assert statuses[0] == (500 if first_fails else 200)
    assert stats.duplicates_after_success == 2 - statuses.index(200)


def test_stats_endpoint_reports_and_resets():
    """GET /stats matches stats(); POST /stats/reset zeroes it; /stats is not itself counted."""

    async def scenario(api: MockAPI, session: Session) -> tuple[Any, MockStats, Any]:
        await post(session, api)
        async with session.get(api.base_url + "/stats") as response:
            before = await response.json()
        snapshot = api.stats()
        async with session.post(api.base_url + "/stats/reset") as response:
            return before, snapshot, await response.json()

    before, snapshot, reset = against(FAST, scenario)
    assert before == snapshot.as_dict()
    assert (before["requests"], before["ok"], before["tokens_admitted"]) == (1, 1, 5 + 16)
    assert reset == MockStats().as_dict()


def test_reset_starts_a_fresh_phase():
    """After a reset the window is empty again and a seeded run meets the same faults again."""
    config = MockConfig(latency_ms=1.0, rpm=4, faults=Faults(fail_rate=0.5), seed=5)

    async def scenario(api: MockAPI, session: Session) -> tuple[list[int], list[int]]:
        first = [(await post(session, api, "/v1/echo", {})).status for _ in range(5)]
        api.reset()
        second = [(await post(session, api, "/v1/echo", {})).status for _ in range(5)]
        return first, second

    first, second = against(config, scenario)
    assert first == second
    assert first[4] == 429
    assert set(first[:4]) <= {200, 500}


def test_echo_answers_the_body_back_for_one_token():
    """POST /v1/echo answers any JSON body back and costs one token."""
    payload = {"id": 7, "tags": ["a", "b"], "nested": {"ok": True}}

    async def scenario(api: MockAPI, session: Session) -> tuple[Answer, MockStats]:
        return await post(session, api, "/v1/echo", payload), api.stats()

    answer, stats = against(MockConfig(latency_ms=1.0, tpm=10), scenario)
    assert (answer.status, answer.body) == (200, payload)
    assert answer.headers["x-ratelimit-remaining-tokens"] == "9"
    assert stats.tokens_admitted == 1


def test_unknown_routes_and_methods_are_refused():
    """An unknown path is a 404 and a known path with the wrong method a 405."""

    async def scenario(api: MockAPI, session: Session) -> tuple[int, int, MockStats]:
        async with session.get(api.base_url + "/v1/nothing") as missing:
            pass
        async with session.get(api.base_url + CHAT) as wrong:
            pass
        return missing.status, wrong.status, api.stats()

    assert against(FAST, scenario) == (404, 405, MockStats())


def test_seeded_faults_repeat_run_after_run():
    """With a seed, the n-th admitted request meets the same fault in every run."""
    rng = random.Random(11)
    expected = [500 if rng.random() < 0.5 else 200 for _ in range(12)]

    async def scenario(api: MockAPI, session: Session) -> list[int]:
        return [(await post(session, api, "/v1/echo", {})).status for _ in range(12)]

    config = MockConfig(latency_ms=1.0, faults=Faults(fail_rate=0.5), seed=11)
    assert against(config, scenario) == expected
    assert against(config, scenario) == expected


def test_base_url_is_loopback_with_the_bound_port():
    """base_url names 127.0.0.1 and the free port picked; it is an error before starting."""
    api = MockAPI(FAST)
    with pytest.raises(RuntimeError, match="async with MockAPI"):
        _ = api.base_url

    async def main() -> str:
        async with api:
            return api.base_url

    url = asyncio.run(main())
    assert url.startswith("http://127.0.0.1:")
    assert int(url.rsplit(":", 1)[1]) > 0


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "example.com"])  # noqa: S104
def test_non_loopback_hosts_are_refused(host):
    """Binding anything but loopback needs allow_remote=True."""
    with pytest.raises(ConfigError, match="allow_remote=True"):
        MockAPI(FAST, host=host)


def test_loopback_hosts_are_accepted():
    """localhost, 127.x and ::1 are loopback and need no permission."""
    for host in ("localhost", "127.0.0.2", "::1"):
        MockAPI(FAST, host=host)
