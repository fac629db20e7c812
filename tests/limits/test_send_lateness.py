"""Buckets count calls as late as they lately went out: the API, full until then, wastes it."""

import asyncio

from conveyor import Limiter
from conveyor.limits.constraints import BUCKET_LATE_S
from conveyor.mockapi.bucket import MessagesLimiter
from conveyor.policy.lateness import KEPT, SendLateness
from conveyor.testing import VirtualClock


def _refusals(delays: list[float], *, learn: bool = True) -> list[bool]:
    """Send calls one after another through 60 requests a minute in 1 s buckets.

    Call i's request goes out `delays[i]` after the limiter lets it in (a busy client), and
    the API's own bucket (the mock's) sees it then. Returns, per call, whether the API refused
    it. With `learn` off, the limiter is never told when requests went out.
    """
    clock = VirtualClock()
    limiter = Limiter("api", requests_per_minute=60, bucket_s=1.0)
    api = MessagesLimiter(rpm=60, itpm=None, otpm=None, burst_s=1.0)
    refused: list[bool] = []

    async def main() -> None:
        for delay in delays:
            async with limiter.acquire() as slot:
                await asyncio.sleep(delay)
                if learn:
                    slot.mark_sent(clock.now)
                refused.append(not api.try_admit(clock.now, input_tokens=0).admitted)
                await asyncio.sleep(0.05)  # the answer

    clock.run(main())
    return refused


def test_a_late_call_from_a_full_bucket_is_counted_from_when_it_went_out():
    """Calls going out 0.3 s late now and then: once seen, the API refuses none of them.

    A call let in from a full bucket and sent 0.3 s late reaches an API whose bucket was full
    until then; the next call, sent at once, found it not yet refilled. Counted as late as
    calls lately went out, it waits that much longer.
    """
    delays = [0.3, 0.0] * 10
    assert any(_refusals(delays, learn=False))  # what happened before it was learned
    refused = _refusals(delays)
    assert not any(refused[2:])  # the first late call teaches the rest


def test_a_call_from_a_full_bucket_sent_late_holds_the_next_until_the_api_refilled():
    """Let in from a full bucket, sent 0.5 s later: the next waits for the API's refill.

    The API's bucket (one request a second) stays full until the first call reaches it at
    0.5 s, so it holds a request again only at 1.5 s. Counted from 0.02 s, the second call
    would go at 1.03 s and be refused; counted from when the first went out, it waits.
    """
    clock = VirtualClock()
    limiter = Limiter("api", requests_per_minute=60, bucket_s=1.0)
    api = MessagesLimiter(rpm=60, itpm=None, otpm=None, burst_s=1.0)
    admitted: list[tuple[float, bool]] = []

    async def call(start_s: float, late_s: float) -> None:
        await asyncio.sleep(start_s)
        async with limiter.acquire() as slot:
            await asyncio.sleep(late_s)
            slot.mark_sent(clock.now)
            admitted.append((clock.now, api.try_admit(clock.now, input_tokens=0).admitted))

    async def main() -> None:
        await asyncio.gather(call(0.0, 0.5), call(0.01, 0.0))

    clock.run(main())
    assert [ok for _, ok in admitted] == [True, True]
    assert admitted[1][0] >= 1.5


def test_calls_sent_at_once_keep_the_usual_allowance():
    """A client that sends at once: buckets keep BUCKET_LATE_S, and the API refuses nothing."""
    clock = VirtualClock()
    limiter = Limiter("api", requests_per_minute=60, bucket_s=1.0)

    async def main() -> None:
        for _ in range(5):
            async with limiter.acquire() as slot:
                slot.mark_sent(clock.now)

    clock.run(main())
    assert limiter.learning.lateness is not None
    assert limiter.learning.lateness.allowance_s(floor_s=BUCKET_LATE_S) == BUCKET_LATE_S
    assert not any(_refusals([0.0] * 10))


def test_only_bucket_limiters_learn_lateness():
    """Windows date calls by their send time already; paced limits keep no lateness."""
    assert Limiter("w", requests_per_minute=60, window_s=1.0).learning.lateness is None
    assert Limiter("p", requests_per_minute=60).learning.lateness is None


def test_the_allowance_is_a_high_quantile_of_the_recent_delays():
    """One call in a hundred may be later; delays older than the last KEPT are forgotten."""
    lateness = SendLateness()
    for _ in range(KEPT):
        lateness.observe(0.5)
    assert lateness.allowance_s(floor_s=0.02) == 0.5
    for _ in range(KEPT - 1):
        lateness.observe(0.01)
    assert lateness.allowance_s(floor_s=0.02) == 0.02  # the one 0.5 left is above the 99th
    lateness.observe(-1.0)  # a clock's rounding: no delay
    assert lateness.allowance_s(floor_s=0.0) == 0.01
