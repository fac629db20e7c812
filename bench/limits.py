"""Rate limits against the local mock API: Conveyor, aiometer, aiolimiter + tenacity, side by side.

Scenario 1 ("limits"): 500 chat requests whose token costs vary widely (10 to 390), with a
requests limit and a tokens limit that both bind, enforced by the mock API over a strict
1-second sliding window (the limits are given per minute; every client is told the window in
the form it can take). Over-limit requests get 429 + Retry-After. Target: Conveyor draws zero
429s and finishes within 3% of the ideal time.

Scenario 2 ("faults"): the same work with 5% of answers 500 and 1% hanging. Every item must
settle; Conveyor with ``timeout_s="auto"`` must finish in under 2x the ideal time. The peers use
a fixed 5 s timeout, as is usual. Here the limits bind, so a hang mostly overlaps with waiting.

Scenario 3 ("hangs"): the faults of scenario 2 without a rate limit, 2,000 requests: the run is
bound by concurrency and latency (ideal: 2,000 / 50 x 50 ms = 2 s), so each hang costs what
the timeout costs. Same target.

Ideal time, a lower bound: any window of `window_s` admits at most `share` of each budget, so
the work needs at least ``k = ceil(max(N / requests_share, tokens / tokens_share))`` windows'
worth of admissions. Packed perfectly (every window's share sent the moment it opens), the last
request starts ``k - 1`` windows after the first and ends one latency later.

Every contender uses the same aiohttp client, the same concurrency (50), and retries 429s
after their Retry-After and 5xx with backoff. The mock API runs in a process of its own; its
counters say how many 429s each contender drew.
"""

from __future__ import annotations

import os
import sys

# Run as a script, this folder comes first on sys.path, and its http.py would shadow the
# standard library's `http` (which aiohttp imports). Take the folder off the path.
_HERE = os.path.dirname(os.path.abspath(__file__))  # noqa: PTH100, PTH120 - before any import
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]  # noqa: PTH100

import argparse
import asyncio
import functools
import json
import math
import random
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import aiometer
import tenacity
from aiolimiter import AsyncLimiter

import conveyor
from conveyor.mockapi import Faults, MockConfig, run_in_process

N = 500
CONCURRENCY = 50
LATENCY_MS = 50.0
RPM = 3_600  # 60 requests per second
TPM = 540_000  # 9,000 tokens per second: with a mean cost of 183, about 49 requests/s
WINDOW_S = 1.0
FIXED_TIMEOUT_S = 5.0
MAX_ATTEMPTS = 10
HANG_N = 2_000  # scenario 3: concurrency-bound, so its ideal is HANG_N / CONCURRENCY latencies


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
    request_share = RPM * WINDOW_S / 60
    token_share = TPM * WINDOW_S / 60
    windows = max(len(reqs) / request_share, sum(r.cost for r in reqs) / token_share)
    return (math.ceil(windows - 1e-9) - 1) * WINDOW_S + LATENCY_MS / 1000


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


def retry_after_of(exc: BaseException) -> float | None:
    headers = getattr(exc, "headers", None) or {}
    value = headers.get("Retry-After") or headers.get("retry-after")
    return float(value) if value is not None else None


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


class _WaitRetryAfter(tenacity.wait.wait_base):
    """tenacity wait: the server's Retry-After when it gives one, else exponential backoff."""

    def __init__(self) -> None:
        self.fallback = tenacity.wait_exponential(multiplier=0.05, max=1.0)

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        hint = retry_after_of(exc) if exc is not None else None
        return hint if hint is not None else float(self.fallback(retry_state))


async def run_aiolimiter_tenacity(base_url: str, reqs: list[Req], *, limited: bool) -> int:
    requests = AsyncLimiter(RPM / 60 * WINDOW_S, WINDOW_S)
    tokens = AsyncLimiter(TPM / 60 * WINDOW_S, WINDOW_S)
    semaphore = asyncio.Semaphore(CONCURRENCY)
    timeout = aiohttp.ClientTimeout(total=None)
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:

        @tenacity.retry(
            stop=tenacity.stop_after_attempt(MAX_ATTEMPTS),
            wait=_WaitRetryAfter(),
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


# -- running ---------------------------------------------------------------------------------


async def _stats(base_url: str, *, reset: bool = False) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        if reset:
            async with session.post(f"{base_url}/stats/reset") as r:
                await r.read()
        async with session.get(f"{base_url}/stats") as r:
            result: dict[str, Any] = await r.json()
            return result


async def measure(name: str, base_url: str, reqs: list[Req], scenario: str) -> dict[str, Any]:
    await _stats(base_url, reset=True)
    # The mock's window must be empty when a contender starts: wait out the last one's window.
    await asyncio.sleep(WINDOW_S * 1.5)
    started = time.perf_counter()
    limited = scenario != "hangs"
    if name == "conveyor":
        auto = scenario != "limits"
        ok = await run_conveyor(base_url, reqs, auto_timeout=auto, limited=limited)
    elif name == "aiometer":
        ok = await run_aiometer(base_url, reqs, limited=limited)
    else:
        ok = await run_aiolimiter_tenacity(base_url, reqs, limited=limited)
    elapsed = time.perf_counter() - started
    stats = await _stats(base_url)
    return {"name": name, "ok": ok, "seconds": elapsed, "stats": stats}


CONTENDERS = ("conveyor", "aiometer", "aiolimiter+tenacity")


def run_scenario(scenario: str, reqs: list[Req]) -> list[dict[str, Any]]:
    faulty = scenario != "limits"
    faults = Faults(fail_rate=0.05, hang_rate=0.01, hang_s=60) if faulty else Faults()
    limited = scenario != "hangs"
    config = MockConfig(
        latency_ms=LATENCY_MS,
        rpm=RPM if limited else None,
        tpm=TPM if limited else None,
        window_s=WINDOW_S,
        faults=faults,
        seed=3,
    )
    with run_in_process(config) as base_url:
        return [asyncio.run(measure(name, base_url, reqs, scenario)) for name in CONTENDERS]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    reqs = make_requests()
    ideal = ideal_s(reqs)
    print(
        f"{N} requests, token costs 10-390 (total {sum(r.cost for r in reqs):,}),"
        f" limits {RPM:,} rpm and {TPM:,} tpm over a strict {WINDOW_S:g} s window,"
        f" latency {LATENCY_MS:g} ms, concurrency {CONCURRENCY}; ideal {ideal:.2f} s"
    )
    checks: list[tuple[str, bool]] = []
    everything: dict[str, Any] = {"ideal_s": ideal}
    titles = {
        "limits": "1: both limits binding",
        "faults": "2: the same limits, 5% 500s, 1% hangs",
        "hangs": f"3: no rate limit, 5% 500s, 1% hangs, {HANG_N} requests",
    }
    for scenario in ("limits", "faults", "hangs"):
        work = reqs if scenario != "hangs" else make_requests(n=HANG_N)
        ideal = ideal_s(reqs) if scenario != "hangs" else HANG_N / CONCURRENCY * LATENCY_MS / 1000
        results = run_scenario(scenario, work)
        everything[scenario] = results
        print(f"\nscenario {titles[scenario]}; ideal {ideal:.2f} s")
        print(f"{'contender':<22} {'settled ok':>10} {'seconds':>8} {'x ideal':>8} {'429s':>6}")
        for r in results:
            ratio = r["seconds"] / ideal
            print(
                f"{r['name']:<22} {r['ok']:>10} {r['seconds']:>8.2f} {ratio:>8.3f}"
                f" {r['stats']['rate_limited']:>6}"
            )
        ours = results[0]
        ratio = ours["seconds"] / ideal
        if scenario == "limits":
            checks.append(
                (
                    f"scenario 1: conveyor 429s = {ours['stats']['rate_limited']} (target 0)",
                    ours["stats"]["rate_limited"] == 0,
                )
            )
            checks.append(
                (f"scenario 1: conveyor {ratio:.3f}x ideal (target <= 1.03)", ratio <= 1.03)
            )
        else:
            number = "2" if scenario == "faults" else "3"
            checks.append(
                (
                    (
                        f"scenario {number}: conveyor settled ok {ours['ok']} of {len(work)}"
                        " (target all)"
                    ),
                    ours["ok"] == len(work),
                )
            )
            checks.append(
                (f"scenario {number}: conveyor {ratio:.2f}x ideal (target < 2)", ratio < 2)
            )
    print()
    for text, ok in checks:
        print(("PASS  " if ok else "FAIL  ") + text)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:  # noqa: PTH123
            json.dump(everything, f, indent=2)
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
