"""The shared limiter on virtual time: exact windows, pacing, costs, pauses, breaker, engine."""

import asyncio
import itertools
import math
from collections.abc import Sequence
from typing import Any

import pytest

import conveyor
from conveyor import CircuitBreaker, CircuitOpen, ConfigError, Limiter, Rate, Retry
from conveyor.limits.limiter import BURST_SPREAD, PACED_MARGIN, WINDOW_MARGIN
from conveyor.testing import VirtualClock


class Http429(Exception):
    status_code = 429

    def __init__(self, retry_after: str) -> None:
        super().__init__("429 Too Many Requests")
        self.headers = {"retry-after": retry_after}


class Http500(Exception):
    status_code = 500


def _max_in_window(times: list[float], window_s: float) -> int:
    return max(sum(1 for t in times if end - window_s < t <= end) for end in times)


async def _admit_all(limiter: Limiter, costs: Sequence[float]) -> list[float]:
    """Acquire one slot per cost, all at once; return each admission time, in order."""
    loop = asyncio.get_running_loop()
    times: list[float] = [0.0] * len(costs)

    async def one(i: int, cost: float) -> None:
        async with limiter.acquire(cost):
            times[i] = loop.time()

    await asyncio.gather(*(one(i, c) for i, c in enumerate(costs)))
    return times


def test_exact_mode_never_overfills_a_window(clock: VirtualClock):
    """600/min over a 1 s window: 10 per second at most, and the 50 take about 4 s."""
    limiter = Limiter("api", requests_per_minute=600, window_s=1.0)
    times = clock.run(_admit_all(limiter, [1] * 50))
    assert _max_in_window(times, 1.0) == 10
    # Each window's ten are spread over BURST_SPREAD of it; the 50th is the fifth window's
    # tenth: four (widened) windows, then nine steps of the spread.
    assert max(times) == pytest.approx(4 * (1 + WINDOW_MARGIN) + 9 * BURST_SPREAD / 10)


def test_requests_and_tokens_bind_together(clock: VirtualClock):
    """With both limits set, each window respects both, whichever binds."""
    limiter = Limiter("llm", requests_per_second=10, tokens_per_second=1000, window_s=1.0)
    costs = [400, 50, 50, 300, 500, 20, 20, 20, 900, 10] * 3
    times = clock.run(_admit_all(limiter, costs))
    for end in times:
        inside = [(t, c) for t, c in zip(times, costs, strict=True) if end - 1.0 < t <= end]
        assert len(inside) <= 10
        assert sum(c for _, c in inside) <= 1000


def test_small_requests_pass_a_waiting_large_one_without_delaying_it(clock: VirtualClock):
    """Backfill: while 90 tokens wait, two calls of 5 that fit go first, not delaying the 90."""
    limiter = Limiter("llm", tokens_per_second=100, window_s=1.0)
    times = clock.run(_admit_all(limiter, [60, 90, 5, 5]))
    # The fives go at the pacer's steps (60 then 5 tokens' worth of the 5% spread) ...
    assert times[2] == pytest.approx(60 * BURST_SPREAD / 100)
    assert times[3] == pytest.approx(65 * BURST_SPREAD / 100)
    # ... and the 90 the moment the 60 leave the window.
    assert times[1] == pytest.approx(1 + WINDOW_MARGIN)


def test_a_head_that_waited_a_window_goes_first(clock: VirtualClock):
    """No caller waits forever: after a window at the head, nobody passes it any more."""
    limiter = Limiter("llm", tokens_per_second=100, window_s=1.0)

    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        big_admitted: list[float] = []

        async def big() -> None:
            async with limiter.acquire(100):
                big_admitted.append(loop.time())

        async def small_stream() -> None:
            for _ in range(400):
                async with limiter.acquire(10):
                    pass
                await asyncio.sleep(0.005)

        async with limiter.acquire(50):
            pass
        await asyncio.gather(big(), small_stream())
        return big_admitted

    (admitted,) = clock.run(main())
    assert admitted < 2.1


def test_paced_mode_spreads_admissions_evenly(clock: VirtualClock):
    """Without a known window, 60/min is one a second (plus the margin), never a burst."""
    limiter = Limiter("api", requests_per_minute=60)
    times = clock.run(_admit_all(limiter, [1] * 5))
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps == pytest.approx([1 / (1 - PACED_MARGIN)] * 4)


def test_settle_refunds_the_difference(clock: VirtualClock):
    """Settling a slot with a smaller real cost lets the next caller in at once."""
    limiter = Limiter("llm", tokens_per_second=100, window_s=1.0)

    async def main() -> float:
        loop = asyncio.get_running_loop()
        async with limiter.acquire(90) as slot:
            slot.settle(10)
        async with limiter.acquire(80):
            return loop.time()

    # Without the refund the 80 would wait a whole window; with it, only the pacer's step
    # for the 10 tokens really spent.
    assert clock.run(main()) == pytest.approx(10 * BURST_SPREAD / 100)


def test_a_429_with_retry_after_pauses_every_caller(clock: VirtualClock):
    """One caller told "retry after 5" makes every caller of that limiter wait 5 s."""
    limiter = Limiter("api", requests_per_second=100)

    async def main() -> float:
        loop = asyncio.get_running_loop()
        with pytest.raises(Http429):
            async with limiter.acquire():
                raise Http429("5")
        async with limiter.acquire():
            return loop.time()

    assert clock.run(main()) == pytest.approx(5.0)


def test_concurrency_through_the_limiter(clock: VirtualClock):
    """concurrency=3 lets three calls through at a time."""
    limiter = Limiter("db", concurrency=3)
    peak = 0
    now = 0

    async def call(_: int) -> None:
        nonlocal peak, now
        async with limiter.acquire():
            now += 1
            peak = max(peak, now)
            await asyncio.sleep(1)
            now -= 1

    async def main() -> None:
        await asyncio.gather(*(call(i) for i in range(10)))

    clock.run(main())
    assert peak == 3
    assert clock.now == 4.0


def test_the_breaker_fails_fast_then_probes(clock: VirtualClock):
    """After repeated 5xx the circuit opens (CircuitOpen at once); after the cooldown, a probe."""
    limiter = Limiter("api", breaker=CircuitBreaker(failure_threshold=2, cooldown_s=10))

    async def main() -> tuple[float, float]:
        for _ in range(2):
            with pytest.raises(Http500):
                async with limiter.acquire():
                    raise Http500
        with pytest.raises(CircuitOpen) as info:
            await limiter.acquire()
        await asyncio.sleep(10)
        async with limiter.acquire():
            pass  # the probe succeeds: closed again
        async with limiter.acquire():
            pass
        return info.value.retry_after, clock.now

    retry_after, now = clock.run(main())
    assert retry_after == 10.0
    assert now == 10.0


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"requests_per_minute": 0}, "requests_per_minute"),
        ({"tokens_per_minute": -5}, "tokens_per_minute"),
        ({"requests_per_second": float("nan")}, "requests_per_second"),
        ({"requests_per_minute": 10, "window_s": 0}, "window_s"),
        ({"requests_per_second": 10, "window_s": 5}, "window_s"),
        ({"concurrency": 0}, "concurrency"),
        ({"concurrency": "auto", "concurrency_bounds": (5, 2)}, "concurrency_bounds"),
        ({"burst": -1}, "burst"),
    ],
)
def test_bad_limits_are_refused_by_name(kwargs, named):
    """Zero or negative limits, unknown periods and impossible windows fail at construction."""
    with pytest.raises(ConfigError, match=named):
        Limiter("api", **kwargs)


def test_unknown_period_names_are_refused():
    """A period the Rate does not know is refused, listing the ones it does."""
    with pytest.raises(ConfigError, match=r"fortnight.*second, minute, hour, day"):
        Rate(10, per="fortnight")


def test_a_cost_no_window_admits_is_refused():
    """A request bigger than the whole window's budget is refused: it could never go."""
    limiter = Limiter("llm", tokens_per_minute=60_000, window_s=1.0)
    with pytest.raises(ConfigError, match="can never be admitted"):
        limiter.acquire(1_001)


def test_engine_runs_every_attempt_through_the_limiters(clock: VirtualClock):
    """Through map(limiters=...), first attempts and retries all respect the window."""
    limiter = Limiter("api", requests_per_second=5, window_s=1.0)
    starts: list[float] = []
    tries: dict[int, int] = {}

    async def call(i: int) -> int:
        starts.append(clock.now)
        tries[i] = tries.get(i, 0) + 1
        if tries[i] == 1 and i % 4 == 0:
            raise ConnectionResetError
        return i

    retry = Retry(attempts=2, base_delay_s=0.01, max_delay_s=0.01)
    report = clock.run(
        conveyor.map(call, range(20), concurrency=20, retry=retry, limiters=[limiter])
    )
    assert report.summary.succeeded == 20
    assert len(starts) == 25
    assert _max_in_window(starts, 1.0) <= 5
    assert limiter.admitted == 25


def test_engine_needs_a_cost_for_token_limits():
    """A token limiter without cost= is refused at the call, saying what to pass."""

    async def call(i: int) -> int:
        return i

    limiter = Limiter("llm", tokens_per_minute=1000)
    with pytest.raises(ConfigError, match="cost="):
        conveyor.run_sync(call, [1], limiters=[limiter])
    with pytest.raises(ConfigError, match="takes a list"):
        conveyor.run_sync(call, [1], limiters=limiter)  # type: ignore[call-overload]


def test_engine_fails_an_item_whose_cost_can_never_fit(clock: VirtualClock):
    """One oversized item fails with a clear reason; the others run."""
    limiter = Limiter("llm", tokens_per_second=100, window_s=1.0)

    async def call(i: int) -> int:
        return i

    report = clock.run(conveyor.map(call, [10, 500, 20], limiters=[limiter], cost=float))
    assert [o.state for o in report] == ["succeeded", "failed", "succeeded"]
    assert "can never be admitted" in (report.outcomes[1].error_message or "")


def test_auto_timeout_cuts_hung_attempts_short(clock: VirtualClock):
    """timeout_s="auto": a hung call costs a few times the normal latency, not a fixed 30 s."""
    hung: set[int] = {7, 60, 130}
    cut_after: list[float] = []

    async def call(i: int) -> int:
        if i in hung:
            hung.discard(i)
            started = clock.now
            try:
                await asyncio.sleep(3600)
            finally:
                cut_after.append(clock.now - started)
        await asyncio.sleep(0.05)
        return i

    retry = Retry(attempts=2, timeout_s="auto", base_delay_s=0.01, max_delay_s=0.01)
    report = clock.run(conveyor.map(call, range(200), concurrency=10, retry=retry))
    assert report.summary.succeeded == 200
    assert len(cut_after) == 3
    # Item 7 started during the warm-up (30 s timeout) and was cut once the estimate came in;
    # the later ones were cut at 4 x p95 = 0.2 s.
    assert max(cut_after) < 1.0
    assert cut_after[1:] == pytest.approx([0.2, 0.2])


def test_adaptive_concurrency_through_the_engine(clock: VirtualClock):
    """concurrency="auto": against a server that slows past 20 in flight, it settles near 20."""
    limiter = Limiter("api", concurrency="auto", concurrency_bounds=(1, 100))
    in_flight = 0
    seen: list[int] = []

    async def call(i: int) -> int:
        nonlocal in_flight
        in_flight += 1
        seen.append(in_flight)
        await asyncio.sleep(0.1 * max(1.0, in_flight / 20))
        in_flight -= 1
        return i

    clock.run(conveyor.map(call, range(4000), concurrency=100, limiters=[limiter]))
    late = seen[-1000:]
    assert 12 <= sum(late) / len(late) <= 40
    assert limiter.concurrency_limit is not None
    assert 10 <= limiter.concurrency_limit <= 45


def test_limiters_are_shared_across_runs(clock: VirtualClock):
    """Two runs through one limiter share its budget: together they stay within it."""
    limiter = Limiter("api", requests_per_second=4, window_s=1.0)
    starts: list[float] = []

    async def call(i: int) -> int:
        starts.append(clock.now)
        return i

    async def main() -> Any:
        return await asyncio.gather(
            conveyor.map(call, range(10), limiters=[limiter]),
            conveyor.map(call, range(10), limiters=[limiter]),
        )

    clock.run(main())
    assert len(starts) == 20
    assert _max_in_window(starts, 1.0) <= 4
    assert max(starts) == pytest.approx(4 * (1 + WINDOW_MARGIN) + 3 * BURST_SPREAD / 4)
    assert not math.isinf(limiter.paused_until) or limiter.paused_until < 0


class Throttled(Exception):
    """botocore's ClientError by shape: a DynamoDB throttle inside an HTTP 400."""

    def __init__(self) -> None:
        super().__init__("ProvisionedThroughputExceededException")
        self.response = {"Error": {"Code": "ProvisionedThroughputExceededException"}}


def test_a_retry_after_raised_by_a_task_pauses_every_sharer(clock: VirtualClock):
    """A task raising RetryAfter(4) under a limiter makes every caller of it wait 4 s."""
    limiter = Limiter("api", requests_per_second=100)

    async def main() -> float:
        loop = asyncio.get_running_loop()
        with pytest.raises(conveyor.RetryAfter):
            async with limiter.acquire():
                raise conveyor.RetryAfter(4)
        async with limiter.acquire():
            return loop.time()

    assert clock.run(main()) == pytest.approx(4.0)


def test_sdk_throttles_and_529s_count_as_pushbacks_and_are_retried(clock: VirtualClock):
    """An AWS throttle or a 529 is the API pushing back: counted, and retried by default."""
    limiter = Limiter("db", requests_per_second=100)
    calls = 0

    async def write(_: int) -> str:
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise Throttled
        return "ok"

    report = clock.run(conveyor.map(write, [1], limiters=[limiter], retry=Retry(attempts=5)))
    assert report.summary.succeeded == 1
    assert calls == 3
    assert limiter.pushbacks == 2
