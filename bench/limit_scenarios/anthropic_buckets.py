"""Scenario (d): Anthropic's token buckets, separate input and output token limits, 529s.

The mock API's Messages route (`conveyor.mockapi`, ``POST /v1/messages``) enforces 600
requests, 90,000 input tokens and 12,000 output tokens a minute as token buckets holding one
second of each (Anthropic's shape: 10 requests, 1,500 input and 200 output tokens at once,
refilled continuously). Requests and input are taken as a call arrives; output as its answer
is produced, and may take the output bucket below zero. 3% of admitted calls are answered 529
``overloaded_error`` (their request and input stay taken). Answers take 400 ms.

100 calls, each with its own input (100-300 tokens, mean 200) and output (10-70 tokens, mean
40) under ``max_tokens=256``, both told to the mock exactly (``x-mock-input-tokens``,
``x-mock-output-tokens``): the work needs 10 s of requests, about 13 s of input and 20 s of
output, so output binds, as it does for long answers, and input and requests do not.

Ideal (the issue's): ``max(N / request rate, input / ITPM rate, output / OTPM rate) +
latency``; the 529s' retries spend requests and input again.
Target: Conveyor draws no 429, every call succeeds, <= 1.15x the ideal.

Contenders, all with aiohttp at concurrency 50, retrying 429 and 529 up to 10 attempts:

- conveyor: ``conveyor.map`` through one ``Limiter("claude", requests_per_minute=600,
  input_tokens_per_minute=90_000, output_tokens_per_minute=12_000, bucket_s=1)``, each call's
  cost ``{"input_tokens": ..., "output_tokens": 256}`` (its bound; answers teach the limiter
  what to reserve), settled from the answer's usage;
- conveyor, output by max_tokens: the same with ``output_reserve="bound"`` (each call reserves
  its ``max_tokens`` of output), to measure the choice (docs/explanations/limits.md);
- aiolimiter+tenacity: an ``AsyncLimiter`` for requests and one for input tokens, one second
  of each (the buckets' shape), tenacity waiting ``retry-after`` on a 429, backing off on 529;
- aiometer: ``max_per_second`` at the request rate, a retry loop;
- hand-written: three ``AsyncLimiter`` buckets (requests, input, output charged each call's
  expected 40 tokens), tenacity as above.
"""

from __future__ import annotations

import asyncio
import functools
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
import aiometer
import tenacity
from aiolimiter import AsyncLimiter

import conveyor
from conveyor.limits.costs import usage_costs
from conveyor.mockapi import MockConfig
from conveyor.mockapi.config import AnthropicLimits

from .common import Budget, Check, Outcome, Scenario, WaitRetryAfter, against_mock

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

N = 100
RPM, ITPM, OTPM = 600, 90_000, 12_000
BURST_S = 1.0
LATENCY_MS = 400.0
OVERLOADED = 0.03
MAX_TOKENS = 256
CONCURRENCY = 50
ATTEMPTS = 10
DEADLINE_S = 60.0


@dataclass(frozen=True)
class Call:
    i: int
    input_tokens: int
    output_tokens: int


def make_calls(seed: int = 7) -> list[Call]:
    rng = random.Random(seed)
    return [Call(i, rng.randint(100, 300), rng.randint(10, 70)) for i in range(N)]


def ideal_s(calls: list[Call]) -> float:
    """The issue's ideal: the budget that binds longest, then one latency."""
    return (
        max(
            len(calls) / (RPM / 60),
            sum(c.input_tokens for c in calls) / (ITPM / 60),
            sum(c.output_tokens for c in calls) / (OTPM / 60),
        )
        + LATENCY_MS / 1000
    )


class HttpError(Exception):
    """A non-200 answer (status, headers), as an HTTP client's error looks."""

    def __init__(self, status: int, headers: dict[str, str], body: Any) -> None:
        super().__init__(f"HTTP {status}: {body}")
        self.status_code = status
        self.headers = headers
        self.body = body


async def post(session: aiohttp.ClientSession, url: str, call: Call) -> dict[str, Any]:
    body = {
        "model": "claude-haiku-4-5",
        "max_tokens": MAX_TOKENS,
        "messages": [{"role": "user", "content": f"Summarise ticket {call.i}."}],
    }
    headers = {
        "x-mock-input-tokens": str(call.input_tokens),
        "x-mock-output-tokens": str(call.output_tokens),
        "x-request-id": f"claude-{call.i}",
    }
    async with session.post(f"{url}/v1/messages", json=body, headers=headers) as r:
        data = await r.json(content_type=None)
        if r.status != 200:
            raise HttpError(r.status, dict(r.headers), data)
        return {"usage": data["usage"], "headers": dict(r.headers)}


_RETRIED = (HttpError, aiohttp.ClientError)


def _retried(exc: BaseException) -> bool:
    return not isinstance(exc, HttpError) or exc.status_code in (429, 500, 529)


async def run_conveyor(url: str, calls: list[Call], *, learned: bool = True) -> int:
    claude = conveyor.Limiter(
        "claude",
        requests_per_minute=RPM,
        input_tokens_per_minute=ITPM,
        output_tokens_per_minute=OTPM,
        bucket_s=BURST_S,
        output_reserve="learned" if learned else "bound",
    )
    return await run_through(claude, url, calls)


async def run_through(claude: conveyor.Limiter, url: str, calls: list[Call]) -> int:
    """Conveyor's way: ``conveyor.map`` through `claude`, each call settled from its usage."""
    async with aiohttp.ClientSession() as session:

        async def one(call: Call) -> None:
            answer = await post(session, url, call)
            slot = conveyor.attempt_slot(claude)
            slot.observe(answer["headers"])
            usage = usage_costs(answer["usage"])
            if usage is not None:
                slot.settle(usage)

        report = await conveyor.map(
            one,
            calls,
            concurrency=CONCURRENCY,
            limiters=[claude],
            cost=lambda c: {"input_tokens": c.input_tokens, "output_tokens": MAX_TOKENS},
            retry=conveyor.Retry(attempts=ATTEMPTS, base_delay_s=0.05, max_delay_s=1.0),
        )
    return report.summary.succeeded


def _tenacious(fn: Callable[[Call], Awaitable[None]]) -> Callable[[Call], Awaitable[None]]:
    return tenacity.retry(
        stop=tenacity.stop_after_attempt(ATTEMPTS),
        wait=WaitRetryAfter(),
        retry=tenacity.retry_if_exception(_retried),
        reraise=True,
    )(fn)


async def _settle_all(one: Callable[[Call], Awaitable[None]], calls: list[Call]) -> int:
    async def settle(call: Call) -> bool:
        try:
            await one(call)
        except Exception:
            return False
        return True

    return sum(await asyncio.gather(*(settle(c) for c in calls)))


async def run_aiolimiter_tenacity(url: str, calls: list[Call]) -> int:
    requests = AsyncLimiter(RPM / 60 * BURST_S, BURST_S)
    inputs = AsyncLimiter(ITPM / 60 * BURST_S, BURST_S)
    gate = asyncio.Semaphore(CONCURRENCY)
    async with aiohttp.ClientSession() as session:

        @_tenacious
        async def one(call: Call) -> None:
            async with gate:
                await requests.acquire()
                await inputs.acquire(call.input_tokens)
                await post(session, url, call)

        return await _settle_all(one, calls)


async def run_hand_written(url: str, calls: list[Call]) -> int:
    requests = AsyncLimiter(RPM / 60 * BURST_S, BURST_S)
    inputs = AsyncLimiter(ITPM / 60 * BURST_S, BURST_S)
    outputs = AsyncLimiter(OTPM / 60 * BURST_S, BURST_S)
    expected_output = 40  # what answers produce on average, known to the writer
    gate = asyncio.Semaphore(CONCURRENCY)
    async with aiohttp.ClientSession() as session:

        @_tenacious
        async def one(call: Call) -> None:
            async with gate:
                await requests.acquire()
                await inputs.acquire(call.input_tokens)
                await outputs.acquire(expected_output)
                await post(session, url, call)

        return await _settle_all(one, calls)


async def _with_retries(session: aiohttp.ClientSession, url: str, call: Call) -> bool:
    for attempt in range(ATTEMPTS):
        try:
            await post(session, url, call)
        except _RETRIED as exc:
            if not _retried(exc):
                return False
            hint = getattr(exc, "headers", {}).get("retry-after")
            await asyncio.sleep(float(hint) if hint else min(1.0, 0.05 * 2**attempt))
        else:
            return True
    return False


async def run_aiometer(url: str, calls: list[Call]) -> int:
    async with aiohttp.ClientSession() as session:
        results = await aiometer.run_all(
            [functools.partial(_with_retries, session, url, c) for c in calls],
            max_at_once=CONCURRENCY,
            max_per_second=RPM / 60,
        )
    return sum(1 for ok in results if ok)


def mock_config() -> MockConfig:
    """The mock API of (d) (and of (f), which shares its limits across processes)."""
    return MockConfig(
        latency_ms=LATENCY_MS,
        latency="fixed",
        window_s=1.0,
        anthropic=AnthropicLimits(
            rpm=RPM, itpm=ITPM, otpm=OTPM, burst_s=BURST_S, overloaded_rate=OVERLOADED
        ),
        seed=5,
    )


def _run(budget: Budget) -> Outcome:
    calls = make_calls()
    config = mock_config()
    ideal = ideal_s(calls)
    rows = against_mock(
        config,
        [
            ("conveyor", lambda url: run_conveyor(url, calls)),
            ("conveyor, output by max_tokens", lambda url: run_conveyor(url, calls, learned=False)),
            ("aiolimiter+tenacity", lambda url: run_aiolimiter_tenacity(url, calls)),
            ("aiometer", lambda url: run_aiometer(url, calls)),
            ("hand-written", lambda url: run_hand_written(url, calls)),
        ],
        deadline_s=DEADLINE_S,
        budget=budget,
    )
    ours = rows[0]
    ratio = ours.seconds / ideal
    checks = [
        Check(f"(d) conveyor settled ok {ours.ok} of {N} (target all)", ours.ok == N),
        Check(f"(d) conveyor 429s = {ours.pushbacks} (target 0)", ours.pushbacks == 0),
        Check(f"(d) conveyor {ratio:.3f}x ideal (target <= 1.15)", ratio <= 1.15),
    ]
    about = (
        f"{N} Messages calls, input 100-300 tokens (total {sum(c.input_tokens for c in calls):,}),"
        f" output 10-70 (total {sum(c.output_tokens for c in calls):,}) under max_tokens"
        f" {MAX_TOKENS}; token buckets of {BURST_S:g} s: {RPM} rpm, {ITPM:,} input and"
        f" {OTPM:,} output tokens a minute; {OVERLOADED:.0%} 529s; latency"
        f" {LATENCY_MS / 1000:g} s; concurrency {CONCURRENCY};"
        " ideal max(N / rpm, input / itpm, output / otpm) + latency"
    )
    return Outcome(
        key="d",
        title=TITLE,
        about=about,
        ideal_s=ideal,
        total=N,
        rows=rows,
        checks=checks,
    )


TITLE = "(d) Anthropic token buckets, separate input and output limits, 3% 529s"
SCENARIO = Scenario(key="d", title=TITLE, run=_run)
