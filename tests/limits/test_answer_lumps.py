"""Answers written together land on the API's output bucket together: the limiter allows for it.

The API takes a call's output when it writes the answer; the limiter learns of it only when it
reads the answer, a few milliseconds later on a busy machine. Calls let in together at a fixed
latency are answered together, so what the API took in those milliseconds can be a lump of
several answers. On virtual time, against the mock's buckets (written apart).
"""

import asyncio
import random

import pytest

from conveyor import Limiter
from conveyor.mockapi.bucket import MessagesLimiter
from conveyor.testing import VirtualClock


def _refusals(seed: int, *, read_lag_s: float, reserve: str = "learned") -> tuple[int, float, int]:
    """40 calls at concurrency 20, answered 0.3 s after they reach the API.

    Returns the API's 429s, the seconds the run took, and the output tokens it produced.

    Limits as docs/howto/limit-claude.md's example: 300 requests, 120,000 input and 15,000
    output tokens a minute, buckets of 1 s; inputs 228-626 tokens, outputs 20-120 under
    max_tokens 256. Each request reaches the API up to `read_lag_s` after it was let in, and
    each answer is read up to `read_lag_s` after the API wrote it. A refused call is retried
    after the API's retry-after, as the engine would.
    """
    rng = random.Random(seed)
    clock = VirtualClock()
    limiter = Limiter(
        "claude",
        requests_per_minute=300,
        input_tokens_per_minute=120_000,
        output_tokens_per_minute=15_000,
        bucket_s=1,
        output_reserve=reserve,  # type: ignore[arg-type]
    )
    api = MessagesLimiter(rpm=300, itpm=120_000, otpm=15_000, burst_s=1.0)
    calls = [(rng.randint(228, 626), rng.randint(20, 120)) for _ in range(40)]
    refused = 0
    gate = asyncio.Semaphore(20)

    async def one(inp: int, out: int) -> None:
        nonlocal refused
        async with gate:
            while True:
                async with limiter.acquire({"input_tokens": inp, "output_tokens": 256}) as slot:
                    await asyncio.sleep(rng.uniform(0, read_lag_s))
                    decision = api.try_admit(clock.now, input_tokens=inp)
                    if decision.admitted:
                        await asyncio.sleep(0.3)
                        api.settle_output(clock.now, output_tokens=out)
                        await asyncio.sleep(rng.uniform(0, read_lag_s))
                        slot.settle({"input_tokens": inp, "output_tokens": out})
                        return
                refused += 1
                await asyncio.sleep(decision.retry_after_s)

    async def main() -> None:
        await asyncio.gather(*(one(inp, out) for inp, out in calls))

    clock.run(main())
    return refused, clock.now, sum(out for _, out in calls)


@pytest.mark.parametrize("read_lag_s", [0.002, 0.01, 0.05])
@pytest.mark.parametrize("reserve", ["learned", "bound"])
def test_answers_read_late_draw_no_429(read_lag_s, reserve):
    """Twenty runs each: the API refuses none of the calls, answers read up to 50 ms late."""
    refused = [_refusals(seed, read_lag_s=read_lag_s, reserve=reserve)[0] for seed in range(20)]
    assert refused == [0] * 20


def test_the_work_still_goes_at_the_output_rate():
    """Output binds (250 tokens a second, a bucket of 250): each run within 15% of that pace.

    The ideal: the output beyond the first bucket at the rate, plus the last answer's latency.
    """
    for seed in range(10):
        _, seconds, output = _refusals(seed, read_lag_s=0.01)
        ideal = (output - 250) / 250 + 0.3
        assert seconds < 1.15 * ideal, (seed, seconds, ideal)
