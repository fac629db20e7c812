"""The limiter's guarantee, proven with Hypothesis on virtual time, and learning from headers."""

import asyncio
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor import Limiter
from conveyor.limits.limiter import BURST_SPREAD, WINDOW_MARGIN
from conveyor.testing import VirtualClock

calls = st.lists(
    st.tuples(
        st.floats(min_value=0.0, max_value=0.5),  # when the caller arrives, after the previous
        st.integers(min_value=1, max_value=100),  # its token cost
        st.floats(min_value=0.0, max_value=0.3),  # how long its call takes
    ),
    min_size=1,
    max_size=40,
)


def _run(limiter: Limiter, plan: list[tuple[float, int, float]]) -> list[tuple[float, int]]:
    """Callers arrive as planned, each acquires its cost and holds the slot for its call."""
    clock = VirtualClock()
    admitted: list[tuple[float, int]] = []

    async def caller(delay: float, cost: int, duration: float) -> None:
        await asyncio.sleep(delay)
        async with limiter.acquire(cost):
            admitted.append((clock.now, cost))
            await asyncio.sleep(duration)

    async def main() -> None:
        arrival = 0.0
        tasks = []
        for gap, cost, duration in plan:
            arrival += gap
            tasks.append(asyncio.create_task(caller(arrival, cost, duration)))
        await asyncio.gather(*tasks)

    clock.run(main())
    return admitted


@settings(max_examples=150, deadline=None)
@given(plan=calls, concurrency=st.one_of(st.none(), st.integers(1, 5)))
def test_no_window_ever_admits_more_than_its_share(plan, concurrency):
    """Any arrivals, costs and durations: no 1 s window passes 10 calls or 200 tokens."""
    limiter = Limiter(
        "api",
        requests_per_minute=600,
        tokens_per_minute=12_000,
        window_s=1.0,
        concurrency=concurrency,
    )
    admitted = _run(limiter, plan)
    assert len(admitted) == len(plan)
    for end, _ in admitted:
        inside = [c for t, c in admitted if end - 1.0 < t <= end]
        assert len(inside) <= 10
        assert sum(inside) <= 200


@settings(max_examples=50, deadline=None)
@given(n=st.integers(min_value=1, max_value=60))
def test_throughput_reaches_the_share(n):
    """Callers all waiting: the k-th window's share goes as soon as the window allows."""
    limiter = Limiter("api", requests_per_second=10, window_s=1.0)
    admitted = _run(limiter, [(0.0, 1, 0.0)] * n)
    last = max(t for t, _ in admitted)
    windows = math.ceil(n / 10) - 1
    position = (n - 1) % 10
    assert last == pytest.approx(windows * (1 + WINDOW_MARGIN) + position * BURST_SPREAD / 10)


def _wait_after(clock: VirtualClock, headers: dict[str, str]) -> float:
    """When the next caller goes, after one answer carried `headers`."""
    limiter = Limiter("api", requests_per_minute=600_000, window_s=1.0)

    async def main() -> float:
        async with limiter.acquire() as slot:
            slot.observe(headers)
        async with limiter.acquire():
            return clock.now

    return clock.run(main())


def test_a_bucket_that_is_empty_refills_at_its_pace(clock: VirtualClock):
    """OpenAI: 0 of 6,000 left, full in 2 s: the next call goes once one request refilled."""
    headers = {
        "x-ratelimit-limit-requests": "6000",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "2s",
    }
    assert _wait_after(clock, headers) == pytest.approx(2.0 / 6000, abs=1e-6)


def test_a_fixed_window_that_is_spent_comes_back_at_its_reset(clock: VirtualClock):
    """X-RateLimit (a fixed window): 0 left, reset in 2 s: the next call waits the 2 s."""
    headers = {"x-ratelimit-limit": "6000", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "2"}
    assert _wait_after(clock, headers) == pytest.approx(2.0)


def test_a_bucket_of_unknown_size_is_waited_out(clock: VirtualClock):
    """OpenAI headers without the limit give no pace: 0 left, reset in 2 s means wait 2 s."""
    headers = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "2s"}
    assert _wait_after(clock, headers) == pytest.approx(2.0)


def test_headers_never_raise_the_budget(clock: VirtualClock):
    """A server that says plenty is left does not let the limiter pass its own limit."""
    limiter = Limiter("api", requests_per_second=2, window_s=1.0)
    headers = {"x-ratelimit-remaining-requests": "1000", "x-ratelimit-reset-requests": "1s"}

    async def main() -> list[float]:
        times = []
        for _ in range(3):
            async with limiter.acquire() as slot:
                slot.observe(headers)
                times.append(clock.now)
        return times

    times = clock.run(main())
    assert times[2] == pytest.approx(1 + WINDOW_MARGIN)


def test_malformed_headers_change_nothing(clock: VirtualClock):
    """Garbage in rate-limit headers is ignored: no crash, no pause."""
    limiter = Limiter("api", requests_per_second=100, window_s=1.0)

    async def main() -> float:
        async with limiter.acquire() as slot:
            slot.observe({"x-ratelimit-remaining-requests": "lots", "retry-after": "soon"})
        async with limiter.acquire():
            return clock.now

    assert clock.run(main()) < 0.01


def test_our_limit_rounded_down_by_the_api_is_not_read_as_a_stricter_one(clock: VirtualClock):
    """500 a minute in 1 s windows is 8.33 a window; an API's "8" a second is that, rounded down.

    Read as a stricter limit, its "remaining" (less every call admitted since the request was
    sent) throttled the run well below what was allowed. "7" a second is stricter: adopted.
    """
    limiter = Limiter("api", requests_per_minute=500, window_s=1.0)

    def cap_after(limit: str) -> bool:
        headers = {
            "ratelimit": f"limit={limit}, remaining=0, reset=1",
            "ratelimit-policy": f"{limit};w=1",
        }

        async def main() -> bool:
            async with limiter.acquire() as slot:
                slot.observe(headers)
            return "requests" in limiter._server_caps

        return clock.run(main())

    assert cap_after("8") is False
    assert limiter.rates[0].limit == 500
    assert cap_after("7") is True
    assert limiter.rates[0].limit == pytest.approx(420)


def test_a_per_minute_limit_stated_below_ours_is_adopted_from_the_first_answer(
    clock: VirtualClock,
):
    """OpenAI states per-minute limits: 500 against our 600 is adopted; 500 against 500 is not."""
    limiter = Limiter("api", requests_per_minute=600, tokens_per_minute=240_000, window_s=1.0)
    headers = {
        "x-ratelimit-limit-requests": "500",
        "x-ratelimit-remaining-requests": "499",
        "x-ratelimit-reset-requests": "120ms",
        "x-ratelimit-limit-tokens": "200000",
        "x-ratelimit-remaining-tokens": "199000",
        "x-ratelimit-reset-tokens": "300ms",
    }

    async def main() -> None:
        async with limiter.acquire(100) as slot:
            slot.observe(headers)

    clock.run(main())
    assert [r.limit for r in limiter.rates] == pytest.approx([500, 200_000])
    assert limiter.adopted == {"requests": (600, 500), "tokens": (240_000, 200_000)}
    same = Limiter("api", requests_per_minute=500, tokens_per_minute=200_000, window_s=1.0)

    async def again() -> None:
        async with same.acquire(100) as slot:
            slot.observe(headers)

    clock.run(again())
    assert same.adopted == {}
    assert same._server_caps == {}
