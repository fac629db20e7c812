"""Scenario (f): 4 worker processes sharing scenario (d)'s Anthropic limits through Redis.

The same mock API, limits and calls as (d) (`anthropic_buckets`), split across 4 processes
(multiprocessing, spawned), each running its quarter through ``conveyor.map`` with a
`RedisLimiter` built from the same `LimiterConfig` (``redis_limiter(config, url)``): one
budget for all four, held in the Redis at ``127.0.0.1:6379`` (the bench prints SKIP if it is
not there). Four processes that divided the limits by hand would each get a quarter; four
that did not share would draw 429s.

Utilisation: the ideal time of (d) (the binding budget, used fully, plus one latency) over
the time the four took together, from the first call to the last answer. Targets: 0 429s,
every call succeeds, utilisation >= 0.9.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time

import conveyor
from conveyor.limits.redis_limiter import redis_limiter
from conveyor.mockapi import run_in_process

from . import anthropic_buckets as d
from .common import Budget, Check, Outcome, Row, Scenario, mock_stats

WORKERS = int(os.environ.get("CONVEYOR_BENCH_WORKERS", "4"))
REDIS_URL = os.environ.get("CONVEYOR_BENCH_REDIS", "redis://127.0.0.1:6379/0")
DEADLINE_S = 90.0


def _config() -> conveyor.LimiterConfig:
    return conveyor.Limiter(
        "claude",
        requests_per_minute=d.RPM,
        input_tokens_per_minute=d.ITPM,
        output_tokens_per_minute=d.OTPM,
        bucket_s=d.BURST_S,
    ).config


async def _worker(url: str, calls: list[d.Call], prefix: str, start_at: float) -> tuple[int, float]:
    claude = redis_limiter(_config(), REDIS_URL, prefix=prefix)
    await asyncio.sleep(max(start_at - time.time(), 0.0))  # all four start together
    started = time.time()
    try:
        ok = await d.run_through(claude, url, calls)
        await claude.drain()
        return ok, started
    finally:
        await claude.redis.aclose()


def _process(args: tuple[str, list[d.Call], str, float]) -> tuple[int, float, float]:
    """One worker process: (calls that succeeded, when it started, when it ended)."""
    url, calls, prefix, start_at = args
    ok, started = asyncio.run(_worker(url, calls, prefix, start_at))
    return ok, started, time.time()


def _redis_up() -> bool:
    import redis  # noqa: PLC0415 - only this scenario needs it

    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping()
    except redis.RedisError:
        return False
    return True


def _run(budget: Budget) -> Outcome:
    calls = d.make_calls()
    ideal = d.ideal_s(calls)
    config = d.mock_config()
    if not _redis_up():
        return Outcome(
            key="f",
            title=TITLE,
            about=f"no Redis at {REDIS_URL}: SKIP",
            ideal_s=ideal,
            total=len(calls),
            rows=[],
            checks=[],
        )
    prefix = f"conveyor:bench:{os.getpid()}:{time.time_ns()}"
    with run_in_process(config) as url:
        asyncio.run(_warm(url))
        # Time enough for the four to spawn and import (on 2 cores, seconds) and the mock's
        # buckets to be full again; the run is timed from the first process's start.
        start_at = time.time() + 6.0
        parts = [(url, calls[k::WORKERS], prefix, start_at) for k in range(WORKERS)]
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(WORKERS) as pool:
            done = pool.map_async(_process, parts).get(
                timeout=min(DEADLINE_S, budget.deadline_s(DEADLINE_S)) + 30
            )
        stats = asyncio.run(mock_stats(url))
    ok = sum(n for n, _, _ in done)
    late = max(s for _, s, _ in done) - start_at
    seconds = max(t for _, _, t in done) - min(s for _, s, _ in done)
    row = Row(
        contender=f"conveyor, {WORKERS} processes, Redis",
        ok=ok,
        seconds=seconds,
        pushbacks=int(stats["rate_limited"]),
        overloaded=int(stats["overloaded"]),
        stats=stats,
    )
    used = ideal / seconds
    checks = [
        Check(f"(f) conveyor settled ok {ok} of {len(calls)} (target all)", ok == len(calls)),
        Check(f"(f) conveyor 429s = {row.pushbacks} (target 0)", row.pushbacks == 0),
        Check(f"(f) utilisation {used:.3f} (target >= 0.9)", used >= 0.9),
    ]
    about = (
        f"scenario (d)'s {len(calls)} calls split across {WORKERS} processes sharing one"
        f" RedisLimiter ({REDIS_URL}); the last process started {late * 1000:.0f} ms after"
        " the agreed moment; utilisation = ideal / elapsed"
    )
    return Outcome(
        key="f",
        title=TITLE,
        about=about,
        ideal_s=ideal,
        total=len(calls),
        rows=[row],
        checks=checks,
    )


async def _warm(url: str) -> None:
    from .common import _warm_up  # noqa: PLC0415

    await _warm_up(url)
    await mock_stats(url, reset=True)


TITLE = "(f) 4 worker processes sharing (d)'s limits through Redis"
SCENARIO = Scenario(key="f", title=TITLE, run=_run)
