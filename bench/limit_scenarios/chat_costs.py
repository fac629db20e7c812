"""Scenario (a) and its two variants: 500 chat requests of widely varied cost, through aiohttp.

(a) "limits": 500 chat requests whose token costs vary widely (10 to 390), with a requests limit
and a tokens limit that both bind, enforced by the mock API over a strict 1-second sliding
window (the limits are given per minute; every client is told the window in the form it can
take). Over-limit requests get 429 + Retry-After. Target: Conveyor draws zero 429s and finishes
within 3% of the ideal time (`ideal.window_ideal_s`: the fluid bound, since costs vary).

"faults": the same work with 5% of answers 500 and 1% hanging. Every item must settle; Conveyor
with ``timeout_s="auto"`` must finish in under 2x the ideal time. The peers use a fixed 5 s
timeout, as is usual. Here the limits bind, so a hang mostly overlaps with waiting.

"hangs": the faults without a rate limit, 2,000 requests: the run is bound by concurrency and
latency (ideal: 2,000 / 50 x 50 ms = 2 s), so each hang costs what the timeout costs. Same
target.

Every contender uses the same aiohttp client, the same concurrency (50), and retries 429s after
their Retry-After and 5xx with backoff. The mock API's counters say how many 429s each drew.
"""

from __future__ import annotations

import asyncio
import functools
import random
from dataclasses import dataclass
from typing import Any

import aiohttp
import aiometer
import tenacity
from aiolimiter import AsyncLimiter

import conveyor
from conveyor.mockapi import Faults, MockConfig

from .common import (
    Budget,
    Check,
    Outcome,
    Scenario,
    WaitRetryAfter,
    against_mock,
    retry_after_of,
)
from .ideal import concurrency_ideal_s, window_ideal_s

N = 500
CONCURRENCY = 50
LATENCY_MS = 50.0
RPM = 3_600  # 60 requests per second
TPM = 540_000  # 9,000 tokens per second: with a mean cost of 183, about 49 requests/s
WINDOW_S = 1.0
FIXED_TIMEOUT_S = 5.0
MAX_ATTEMPTS = 10
HANG_N = 2_000  # "hangs": concurrency-bound, so its ideal is HANG_N / CONCURRENCY latencies
DEADLINE_S = 60.0  # per contender; today's slowest takes about 12 s


@dataclass(frozen=True)
class Req:
    id: str
    cost: int


class HttpError(Exception):
    """A non-200 answer, shaped like an HTTP client's error (status_code, headers)."""

    def __init__(self, status: int, headers: dict[str, str]) -> None:
        super().__init__(f"HTTP {status}")
        self.status_code = status
        self.headers = headers


def make_requests(seed: int = 1, n: int = N) -> list[Req]:
    rng = random.Random(seed)
    # Half tiny, half large, shuffled: the requests limit binds during runs of tiny ones, the
    # tokens limit during runs of large ones, and over the whole run.
    costs = [rng.randint(10, 30) if i % 2 else rng.randint(300, 390) for i in range(n)]
    rng.shuffle(costs)
    return [Req(f"req-{i}", c) for i, c in enumerate(costs)]


def ideal_s(reqs: list[Req]) -> float:
    return window_ideal_s(
        requests=len(reqs),
        tokens=sum(r.cost for r in reqs),
        request_share=RPM * WINDOW_S / 60,
        token_share=TPM * WINDOW_S / 60,
        window_s=WINDOW_S,
        latency_s=LATENCY_MS / 1000,
    )


BODY = {"model": "mock", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}


async def post(session: aiohttp.ClientSession, base_url: str, req: Req) -> dict[str, Any]:
    """One call; a non-200 answer raises HttpError with the answer's headers."""
    headers = {"x-mock-cost": str(req.cost), "x-request-id": req.id}
    async with session.post(f"{base_url}/v1/chat/completions", json=BODY, headers=headers) as r:
        if r.status != 200:
            await r.read()
            raise HttpError(r.status, dict(r.headers))
        result: dict[str, Any] = await r.json()
        return result


# -- the contenders ------------------------------------------------------------------------


async def run_conveyor(base_url: str, reqs: list[Req], *, auto_timeout: bool, limited: bool) -> int:
    limiters = (
        [
            conveyor.Limiter(
                "mock", requests_per_minute=RPM, tokens_per_minute=TPM, window_s=WINDOW_S
            )
        ]
        if limited
        else []
    )
    retry = conveyor.Retry(
        attempts=MAX_ATTEMPTS,
        base_delay_s=0.05,
        max_delay_s=1.0,
        timeout_s="auto" if auto_timeout else FIXED_TIMEOUT_S,
    )
    timeout = aiohttp.ClientTimeout(total=None)
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        report = await conveyor.map(
            functools.partial(post, session, base_url),
            reqs,
            concurrency=CONCURRENCY,
            retry=retry,
            limiters=limiters,
            cost=lambda r: r.cost,
        )
    succeeded: int = report.summary.succeeded
    return succeeded


async def _call_with_retries(session: aiohttp.ClientSession, base_url: str, req: Req) -> bool:
    """The retry loop a careful aiometer user writes: Retry-After on 429, backoff on 5xx."""
    for attempt in range(MAX_ATTEMPTS):
        try:
            async with asyncio.timeout(FIXED_TIMEOUT_S):
                await post(session, base_url, req)
        except HttpError as exc:
            wait = retry_after_of(exc) if exc.status_code == 429 else None
            await asyncio.sleep(wait if wait is not None else min(1.0, 0.05 * 2**attempt))
        except (TimeoutError, aiohttp.ClientError):
            await asyncio.sleep(min(1.0, 0.05 * 2**attempt))
        else:
            return True
    return False


async def run_aiometer(base_url: str, reqs: list[Req], *, limited: bool) -> int:
    timeout = aiohttp.ClientTimeout(total=None)
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        # aiometer paces requests only: max_per_second is the window's request share.
        results = await aiometer.run_all(
            [functools.partial(_call_with_retries, session, base_url, r) for r in reqs],
            max_at_once=CONCURRENCY,
            max_per_second=RPM / 60 if limited else None,
        )
    return sum(1 for ok in results if ok)


async def run_aiolimiter_tenacity(base_url: str, reqs: list[Req], *, limited: bool) -> int:
    requests = AsyncLimiter(RPM / 60 * WINDOW_S, WINDOW_S)
    tokens = AsyncLimiter(TPM / 60 * WINDOW_S, WINDOW_S)
    semaphore = asyncio.Semaphore(CONCURRENCY)
    timeout = aiohttp.ClientTimeout(total=None)
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:

        @tenacity.retry(
            stop=tenacity.stop_after_attempt(MAX_ATTEMPTS),
            wait=WaitRetryAfter(),
            retry=tenacity.retry_if_exception_type((HttpError, TimeoutError, aiohttp.ClientError)),
            reraise=True,
        )
        async def call(req: Req) -> None:
            async with semaphore:
                if limited:
                    await requests.acquire()
                    await tokens.acquire(req.cost)
                async with asyncio.timeout(FIXED_TIMEOUT_S):
                    await post(session, base_url, req)

        async def settle(req: Req) -> bool:
            try:
                await call(req)
            except Exception:
                return False
            return True

        results = await asyncio.gather(*(settle(r) for r in reqs))
    return sum(results)


# -- the three scenarios ---------------------------------------------------------------------


def _run(key: str, budget: Budget) -> Outcome:
    limited = key != "hangs"
    reqs = make_requests() if key != "hangs" else make_requests(n=HANG_N)
    faults = Faults(fail_rate=0.05, hang_rate=0.01, hang_s=60) if key != "a" else Faults()
    config = MockConfig(
        latency_ms=LATENCY_MS,
        rpm=RPM if limited else None,
        tpm=TPM if limited else None,
        window_s=WINDOW_S,
        faults=faults,
        seed=3,
    )
    auto = key != "a"
    rows = against_mock(
        config,
        [
            ("conveyor", lambda url: run_conveyor(url, reqs, auto_timeout=auto, limited=limited)),
            ("aiometer", lambda url: run_aiometer(url, reqs, limited=limited)),
            (
                "aiolimiter+tenacity",
                lambda url: run_aiolimiter_tenacity(url, reqs, limited=limited),
            ),
        ],
        deadline_s=DEADLINE_S,
        budget=budget,
    )
    if limited:
        ideal = ideal_s(reqs)
    else:
        ideal = concurrency_ideal_s(
            requests=HANG_N, concurrency=CONCURRENCY, latency_s=LATENCY_MS / 1000
        )
    ours = rows[0]
    ratio = ours.seconds / ideal
    if key == "a":
        checks = [
            Check(f"(a) conveyor 429s = {ours.pushbacks} (target 0)", ours.pushbacks == 0),
            Check(f"(a) conveyor {ratio:.3f}x ideal (target <= 1.03)", ratio <= 1.03),
        ]
    else:
        checks = [
            Check(
                f"({key}) conveyor settled ok {ours.ok} of {len(reqs)} (target all)",
                ours.ok == len(reqs),
            ),
            Check(f"({key}) conveyor {ratio:.2f}x ideal (target < 2)", ratio < 2),
        ]
    about = (
        f"{len(reqs)} requests, token costs 10-390 (total {sum(r.cost for r in reqs):,}),"
        f" limits {RPM:,} rpm and {TPM:,} tpm over a strict {WINDOW_S:g} s window,"
        f" latency {LATENCY_MS:g} ms, concurrency {CONCURRENCY}"
        if limited
        else f"{HANG_N} requests, no rate limit, latency {LATENCY_MS:g} ms,"
        f" concurrency {CONCURRENCY}: ideal = {HANG_N} / {CONCURRENCY} latencies"
    )
    return Outcome(
        key=key,
        title=TITLES[key],
        about=about,
        ideal_s=ideal,
        total=len(reqs),
        rows=rows,
        checks=checks,
    )


TITLES = {
    "a": "(a) both limits binding",
    "faults": "(a, faults) the same limits, 5% 500s, 1% hangs",
    "hangs": f"(a, hangs) no rate limit, 5% 500s, 1% hangs, {HANG_N} requests",
}

SCENARIOS = [
    Scenario(key=key, title=title, run=functools.partial(_run, key))
    for key, title in TITLES.items()
]
