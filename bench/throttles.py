"""Throttles that are not an HTTP 429: a DynamoDB-style bulk write, side by side.

A fake table (in this process) accepts 40 writes a second (a token bucket of 40, refilled
continuously, as DynamoDB's provisioned capacity is) and answers a write over it the way
botocore raises it: a ``ClientError`` whose ``response["Error"]["Code"]`` is
``ProvisionedThroughputExceededException`` (HTTP 400 inside, not a 429). 300 items, 10 at a
time, each write 5 ms. Ideal: (300 - 40) / 40 = 6.5 s (the bucket starts full: 40 go at once,
then 40 a second).

Contenders, in one run:

1. ``gather`` + ``Semaphore``, no retries: what a hand-rolled loop does;
2. aiometer at ``max_per_second=40``, no retries;
3. aiolimiter at 40/s + tenacity retrying the throttle (a predicate written by hand for it);
4. Conveyor, ``Limiter(requests_per_second=40, burst=40)`` (the table's shape), default retry
   (the error classifier knows the throttle's code);
5. Conveyor, the same limiter stated 20% too high (48/s): the throttles it draws are retried.

Targets: Conveyor (4) 0 failed and <= 1.10x the ideal; (5) 0 failed. ``python bench/throttles.py``.
Real time, bounded: every contender has a 60 s deadline.
"""

from __future__ import annotations

import asyncio
import functools
import time
from typing import Any

import aiometer
import tenacity
from aiolimiter import AsyncLimiter

import conveyor

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
    return report.summary.failed


async def measure(name: str, run: Any) -> tuple[str, int, int, float]:
    table = Table()
    started = time.monotonic()
    failed = await asyncio.wait_for(run(table), DEADLINE_S)
    return name, failed, table.throttled, time.monotonic() - started


async def main() -> int:
    ideal = (N - RATE) / RATE + WRITE_S
    rows = [
        await measure("gather+Semaphore, no retry", gather_semaphore),
        await measure("aiometer 40/s, no retry", with_aiometer),
        await measure("aiolimiter 40/s + tenacity", aiolimiter_tenacity),
        await measure("conveyor, Limiter 40/s", lambda t: with_conveyor(t, RATE)),
        await measure("conveyor, Limiter 48/s (20% high)", lambda t: with_conveyor(t, RATE * 1.2)),
    ]
    print(f"{N} writes, a table taking {RATE:g}/s; ideal {ideal:.2f} s")
    print(f"{'contender':36} {'failed':>6} {'throttled':>9} {'seconds':>8} {'x ideal':>8}")
    for name, failed, throttled, seconds in rows:
        print(f"{name:36} {failed:6} {throttled:9} {seconds:8.2f} {seconds / ideal:8.3f}")
    checks = [
        ("conveyor at the table's rate: 0 failed", rows[3][1] == 0, rows[3][1]),
        ("conveyor at the table's rate: <= 1.10x ideal", rows[3][3] / ideal <= 1.10,
         f"{rows[3][3] / ideal:.3f}"),
        ("conveyor stated 20% high: 0 failed (throttles retried)", rows[4][1] == 0, rows[4][1]),
    ]  # fmt: skip
    for label, ok, got in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {label} (got {got})")
    return 0 if all(ok for _, ok, _ in checks) else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
