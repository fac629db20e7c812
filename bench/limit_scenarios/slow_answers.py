"""Scenarios (b) and (c): slow answers through the ``openai`` client, OpenAI-sized limits.

(b) 120 chat calls of exactly 430 tokens each as the mock charges them (a prompt of 1,600
characters = 400 tokens, plus ``max_tokens=30``; Conveyor's estimate is the same sum), answers
after a fixed 2.5 s, and 500 requests / 200,000 tokens a minute enforced over a strict 1 s
window: 8 requests and 3,333 tokens a window, so the tokens bind at 7 calls a window.
Every contender is told those limits. Target: Conveyor draws no 429 and takes <= 1.10x ideal.

(c) The same, but every contender is told limits 20% above what the mock enforces (600 / 240,000
stated, 500 / 200,000 enforced): the 429s show who learns the real limits from the answers.
Target: Conveyor <= 5 429s in 120 calls, <= 1.3x ideal.

Ideal (`ideal.uniform_ideal_s`, over the limits the mock enforces): with every call the same
cost, a window holds p = min(8, floor(3,333 / 430)) = 7 whole calls, so 120 calls need ceil(120
/ 7) = 18 windows; the last starts 17 s after the first and answers 2.5 s later: 19.5 s. (The
fluid bound of scenario (a), which lets a window hold 7.75 calls' worth of tokens, would say
17.5 s, which no client can reach.)

Contenders, all through ``openai.AsyncOpenAI(max_retries=0)`` at concurrency 50, 10 attempts:

- conveyor: `conveyor.llm.limit_openai` with ``Limiter("openai", requests_per_minute=...,
  tokens_per_minute=..., window_s=1)`` and Conveyor's own retries;
- aiolimiter+tenacity: an ``AsyncLimiter`` for requests and one for tokens at the stated
  rates per second, tenacity waiting Retry-After (whole seconds) on a 429, as in (a);
- aiometer: ``max_per_second`` at the stated request rate (it cannot pace tokens), a retry
  loop waiting Retry-After, as in (a);
- hand-written: the best set-up written by hand: two leaky buckets (``AsyncLimiter``) sized so
  that no strict window can see more than the stated share (a bucket of capacity c draining r a
  second lets at most c + r x window through any window: c is one call's worth, r the rest of
  the share), and tenacity waiting OpenAI's exact ``retry-after-ms``.
"""

from __future__ import annotations

import asyncio
import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiometer
import openai
import tenacity
from aiolimiter import AsyncLimiter

import conveyor
from conveyor.llm import limit_openai
from conveyor.mockapi import MockConfig

from .common import Budget, Check, Outcome, Scenario, WaitRetryAfter, against_mock, retry_after_of
from .ideal import uniform_ideal_s

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

N = 120
PROMPT_CHARS = 1_600  # 400 tokens at the mock's 4 characters a token
MAX_TOKENS = 30
LATENCY_MS = 2_500.0
WINDOW_S = 1.0
CONCURRENCY = 50
ATTEMPTS = 10
CLIENT_TIMEOUT_S = 30.0
DEADLINE_S = 60.0  # per contender: about 3x the ideal


@dataclass(frozen=True)
class Limits:
    rpm: float
    tpm: float


ENFORCED = Limits(rpm=500, tpm=200_000)
STATED_HIGH = Limits(rpm=600, tpm=240_000)  # (c): 20% above what the mock enforces


def prompt(i: int) -> str:
    """Return call `i`'s prompt: distinct, and exactly `PROMPT_CHARS` long."""
    head = f"Summarise ticket {i}: "
    return head + "x" * (PROMPT_CHARS - len(head))


def cost_of(content: str, max_tokens: int) -> int:
    """Return the tokens the mock charges a one-message call: ceil(characters / 4) + max_tokens."""
    return math.ceil(len(content) / 4) + max_tokens


COST = cost_of(prompt(0), MAX_TOKENS)  # 430, the same for every call


def call_kwargs(i: int) -> dict[str, Any]:
    return {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": prompt(i)}],
        "max_tokens": MAX_TOKENS,
        # Lets the mock count work done twice (``duplicates_after_success``).
        "extra_headers": {"x-request-id": f"slow-{i}"},
    }


def _client(base_url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=f"{base_url}/v1", api_key="x", max_retries=0, timeout=CLIENT_TIMEOUT_S
    )


async def _settle_all(one: Callable[[int], Awaitable[object]]) -> int:
    """Run `one(i)` for every call, `CONCURRENCY` at a time; return how many succeeded."""
    gate = asyncio.Semaphore(CONCURRENCY)

    async def settle(i: int) -> bool:
        async with gate:
            try:
                await one(i)
            except Exception:
                return False
            return True

    return sum(await asyncio.gather(*(settle(i) for i in range(N))))


_RETRIED = (openai.RateLimitError, openai.InternalServerError, openai.APIConnectionError)


# -- the contenders ------------------------------------------------------------------------


async def run_conveyor(base_url: str, stated: Limits) -> int:
    llm = conveyor.Limiter(
        "openai", requests_per_minute=stated.rpm, tokens_per_minute=stated.tpm, window_s=WINDOW_S
    )
    retry = conveyor.Retry(attempts=ATTEMPTS, base_delay_s=0.05, max_delay_s=1.0)
    async with _client(base_url) as raw:
        client = limit_openai(raw, limiters=[llm], retry=retry)
        return await _settle_all(lambda i: client.chat.completions.create(**call_kwargs(i)))


async def run_aiolimiter_tenacity(base_url: str, stated: Limits) -> int:
    requests = AsyncLimiter(stated.rpm / 60 * WINDOW_S, WINDOW_S)
    tokens = AsyncLimiter(stated.tpm / 60 * WINDOW_S, WINDOW_S)
    gate = asyncio.Semaphore(CONCURRENCY)
    async with _client(base_url) as client:

        @tenacity.retry(
            stop=tenacity.stop_after_attempt(ATTEMPTS),
            wait=WaitRetryAfter(),
            retry=tenacity.retry_if_exception_type(_RETRIED),
            reraise=True,
        )
        async def call(i: int) -> None:
            async with gate:
                await requests.acquire()
                await tokens.acquire(COST)
                await client.chat.completions.create(**call_kwargs(i))

        return await _settle_all_ungated(call)


async def _settle_all_ungated(call: Callable[[int], Awaitable[object]]) -> int:
    """Like `_settle_all`, for contenders that hold the gate themselves (not while waiting
    to retry, as (a)'s aiolimiter+tenacity does)."""

    async def settle(i: int) -> bool:
        try:
            await call(i)
        except Exception:
            return False
        return True

    return sum(await asyncio.gather(*(settle(i) for i in range(N))))


async def _call_with_retries(client: openai.AsyncOpenAI, i: int) -> bool:
    """The retry loop a careful aiometer user writes: Retry-After on 429, backoff on 5xx."""
    for attempt in range(ATTEMPTS):
        try:
            await client.chat.completions.create(**call_kwargs(i))
        except _RETRIED as exc:
            wait = retry_after_of(exc) if isinstance(exc, openai.RateLimitError) else None
            await asyncio.sleep(wait if wait is not None else min(1.0, 0.05 * 2**attempt))
        else:
            return True
    return False


async def run_aiometer(base_url: str, stated: Limits) -> int:
    async with _client(base_url) as client:
        results = await aiometer.run_all(
            [functools.partial(_call_with_retries, client, i) for i in range(N)],
            max_at_once=CONCURRENCY,
            max_per_second=stated.rpm / 60,
        )
    return sum(1 for ok in results if ok)


def strict_bucket(share: float, unit: float) -> AsyncLimiter:
    """Return a leaky bucket that lets no window of `WINDOW_S` see more than `share`.

    Capacity `unit` (one call's worth: ``acquire`` cannot take more than the capacity),
    draining ``share - unit`` a window: at most ``unit + (share - unit) = share`` per window.
    """
    drain_per_s = (share - unit) / WINDOW_S
    return AsyncLimiter(unit, unit / drain_per_s)


async def run_hand_written(base_url: str, stated: Limits) -> int:
    requests = strict_bucket(stated.rpm / 60 * WINDOW_S, 1)
    tokens = strict_bucket(stated.tpm / 60 * WINDOW_S, COST)
    gate = asyncio.Semaphore(CONCURRENCY)
    async with _client(base_url) as client:

        @tenacity.retry(
            stop=tenacity.stop_after_attempt(ATTEMPTS),
            wait=WaitRetryAfter(precise=True),
            retry=tenacity.retry_if_exception_type(_RETRIED),
            reraise=True,
        )
        async def call(i: int) -> None:
            async with gate:
                await requests.acquire()
                await tokens.acquire(COST)
                await client.chat.completions.create(**call_kwargs(i))

        return await _settle_all_ungated(call)


# -- the two scenarios -----------------------------------------------------------------------


def _run(key: str, budget: Budget) -> Outcome:
    stated = ENFORCED if key == "b" else STATED_HIGH
    config = MockConfig(
        latency_ms=LATENCY_MS,
        latency="fixed",
        rpm=ENFORCED.rpm,
        tpm=ENFORCED.tpm,
        window_s=WINDOW_S,
        seed=3,
    )
    assert config.request_share is not None
    assert config.token_share is not None
    ideal = uniform_ideal_s(
        requests=N,
        cost=COST,
        request_share=config.request_share,
        token_share=config.token_share,
        window_s=WINDOW_S,
        latency_s=LATENCY_MS / 1000,
    )
    rows = against_mock(
        config,
        [
            ("conveyor", lambda url: run_conveyor(url, stated)),
            ("aiolimiter+tenacity", lambda url: run_aiolimiter_tenacity(url, stated)),
            ("aiometer", lambda url: run_aiometer(url, stated)),
            ("hand-written", lambda url: run_hand_written(url, stated)),
        ],
        deadline_s=DEADLINE_S,
        budget=budget,
    )
    per_window = min(config.request_share, config.token_share // COST)
    ours = rows[0]
    ratio = ours.seconds / ideal
    most_429s, most_ratio = (0, 1.10) if key == "b" else (5, 1.3)
    target_429s = "0" if most_429s == 0 else f"<= {most_429s} in {N} calls"
    checks = [
        Check(f"({key}) conveyor settled ok {ours.ok} of {N} (target all)", ours.ok == N),
        Check(
            f"({key}) conveyor 429s = {ours.pushbacks} (target {target_429s})",
            ours.pushbacks <= most_429s,
        ),
        Check(
            f"({key}) conveyor {ratio:.3f}x ideal (target <= {most_ratio:.2f})",
            ratio <= most_ratio,
        ),
    ]
    about = (
        f"{N} calls of {COST} tokens (prompt {PROMPT_CHARS:,} characters + max_tokens"
        f" {MAX_TOKENS}), latency {LATENCY_MS / 1000:g} s fixed, enforced {ENFORCED.rpm:g} rpm"
        f" / {ENFORCED.tpm:,.0f} tpm over a strict {WINDOW_S:g} s window"
        f" ({config.request_share} requests, {config.token_share:,} tokens a window),"
        f" stated to every contender {stated.rpm:g} rpm / {stated.tpm:,.0f} tpm,"
        f" concurrency {CONCURRENCY}; ideal: {per_window} calls a window,"
        f" ceil({N} / {per_window}) - 1 windows, then one latency"
    )
    return Outcome(
        key=key,
        title=TITLES[key],
        about=about,
        ideal_s=ideal,
        total=N,
        rows=rows,
        checks=checks,
    )


TITLES = {
    "b": "(b) slow answers (2.5 s), OpenAI-sized limits, told right",
    "c": "(c) slow answers (2.5 s), every contender told limits 20% too high",
}

SCENARIOS = [
    Scenario(key=key, title=title, run=functools.partial(_run, key))
    for key, title in TITLES.items()
]
