"""Scenario (e): throttles that are not an HTTP 429, a DynamoDB-style bulk write.

A fake table (in this process) accepts 40 writes a second (a token bucket of 40, refilled
continuously, as DynamoDB's provisioned capacity is) and answers a write over it the way
botocore raises it: a ``ClientError`` whose ``response["Error"]["Code"]`` is
``ProvisionedThroughputExceededException`` (HTTP 400 inside, not a 429). 300 items, 10 at a
time, each write 5 ms. Ideal (`ideal.bucket_ideal_s`): (300 - 40) / 40 + 5 ms = 6.5 s (the
bucket starts full: 40 go at once, then 40 a second).

Contenders, in one run:

1. ``gather`` + ``Semaphore``, no retries: what a hand-rolled loop does;
2. aiometer at ``max_per_second=40``, no retries;
3. aiolimiter at 40/s + tenacity retrying the throttle (a predicate written by hand for it);
4. Conveyor, ``Limiter(requests_per_second=40, burst=40)`` (the table's shape), default retry
   (the error classifier knows the throttle's code);
5. Conveyor, the same limiter stated 20% too high (48/s): the throttles it draws are retried.

Targets: Conveyor (4) 0 failed and <= 1.10x the ideal; (5) 0 failed. Real time, bounded: every
contender has a 60 s deadline (and the run's budget).
"""

from __future__ import annotations

import asyncio
import functools
import time
from typing import TYPE_CHECKING, Any

import aiometer
import tenacity
from aiolimiter import AsyncLimiter

import conveyor

from .common import Budget, Check, Outcome, Row, Scenario
from .ideal import bucket_ideal_s

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

N = 300
CONCURRENCY = 10
RATE = 40.0
WRITE_S = 0.005
DEADLINE_S = 60.0


class ClientError(Exception):
    """botocore's ClientError, by shape."""

    def __init__(self, code: str) -> None:
        super().__init__(f"An error occurred ({code})")
        self.response = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": 400}}


class Table:
    """A table with provisioned write capacity: a token bucket of `RATE`, refilled evenly."""

    def __init__(self) -> None:
        self.tokens = RATE
        self.at = time.monotonic()
        self.throttled = 0
        self.written: set[int] = set()

    async def put(self, item: int) -> None:
        now = time.monotonic()
        self.tokens = min(RATE, self.tokens + (now - self.at) * RATE)
        self.at = now
        await asyncio.sleep(WRITE_S)
        if self.tokens < 1:
            self.throttled += 1
            raise ClientError("ProvisionedThroughputExceededException")
        self.tokens -= 1
        self.written.add(item)


def _is_throttle(exc: BaseException) -> bool:
    response: dict[str, Any] = getattr(exc, "response", {})
    code = response.get("Error", {}).get("Code")
    return bool(code == "ProvisionedThroughputExceededException")


async def gather_semaphore(table: Table) -> int:
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(i: int) -> bool:
        async with gate:
            try:
                await table.put(i)
            except ClientError:
                return False
            return True

    done = await asyncio.gather(*(one(i) for i in range(N)))
    return done.count(False)


async def with_aiometer(table: Table) -> int:
    async def one(i: int) -> bool:
        try:
            await table.put(i)
        except ClientError:
            return False
        return True

    jobs = [functools.partial(one, i) for i in range(N)]
    done = await aiometer.run_all(jobs, max_at_once=CONCURRENCY, max_per_second=RATE)
    return list(done).count(False)


async def aiolimiter_tenacity(table: Table) -> int:
    limiter = AsyncLimiter(RATE, 1)
    gate = asyncio.Semaphore(CONCURRENCY)

    @tenacity.retry(
        retry=tenacity.retry_if_exception(_is_throttle),
        wait=tenacity.wait_random_exponential(multiplier=0.05, max=2),
        stop=tenacity.stop_after_attempt(10),
        reraise=True,
    )
    async def put(i: int) -> None:
        async with limiter:
            await table.put(i)

    async def one(i: int) -> bool:
        async with gate:
            try:
                await put(i)
            except ClientError:
                return False
            return True

    done = await asyncio.gather(*(one(i) for i in range(N)))
    return done.count(False)


async def with_conveyor(table: Table, rate: float) -> int:
    limiter = conveyor.Limiter("ddb", requests_per_second=rate, burst=RATE)
    report = await conveyor.map(
        table.put,
        range(N),
        concurrency=CONCURRENCY,
        limiters=[limiter],
        retry=conveyor.Retry(attempts=10),
    )
    failed: int = report.summary.failed
    return failed


async def measure(name: str, run: Callable[[Table], Awaitable[int]], deadline_s: float) -> Row:
    """Run one contender on a fresh table; settled ok is what the table holds."""
    table = Table()
    started = time.monotonic()
    note = ""
    if deadline_s <= 0:
        note = "not run: the run's time budget is spent"
    else:
        try:
            await asyncio.wait_for(run(table), deadline_s)
        except TimeoutError:
            note = f"stopped at its {deadline_s:.0f} s deadline"
    return Row(
        contender=name,
        ok=len(table.written),
        seconds=time.monotonic() - started,
        pushbacks=table.throttled,
        note=note,
    )


CONTENDERS: list[tuple[str, Callable[[Table], Awaitable[int]]]] = [
    ("gather+Semaphore, no retry", gather_semaphore),
    ("aiometer 40/s, no retry", with_aiometer),
    ("aiolimiter 40/s + tenacity", aiolimiter_tenacity),
    ("conveyor, Limiter 40/s", functools.partial(with_conveyor, rate=RATE)),
    ("conveyor, Limiter 48/s (20% high)", functools.partial(with_conveyor, rate=RATE * 1.2)),
]


async def _all(budget: Budget) -> list[Row]:
    return [await measure(name, run, budget.deadline_s(DEADLINE_S)) for name, run in CONTENDERS]


def run(budget: Budget) -> Outcome:
    ideal = bucket_ideal_s(requests=N, rate=RATE, burst=RATE, op_s=WRITE_S)
    rows = asyncio.run(_all(budget))
    exact, high = rows[3], rows[4]
    ratio = exact.seconds / ideal
    checks = [
        Check(f"(e) conveyor at the table's rate: {N - exact.ok} failed (target 0)", exact.ok == N),
        Check(
            f"(e) conveyor at the table's rate: {ratio:.3f}x ideal (target <= 1.10)", ratio <= 1.10
        ),
        Check(
            f"(e) conveyor stated 20% high: {N - high.ok} failed, throttles retried (target 0)",
            high.ok == N,
        ),
    ]
    return Outcome(
        key="e",
        title="(e) DynamoDB-style throttles (botocore ClientError inside HTTP 400)",
        about=(
            f"{N} writes, {CONCURRENCY} at a time, {WRITE_S * 1000:g} ms each, a table taking"
            f" {RATE:g}/s (a token bucket of {RATE:g}, starting full)"
        ),
        ideal_s=ideal,
        total=N,
        rows=rows,
        checks=checks,
        pushback_label="throttles",
    )


SCENARIO = Scenario(key="e", title="(e) DynamoDB-style throttles", run=run)
