"""The Messages route's token buckets, on plain numbers: no clock, no loop."""

import copy
import heapq
import math
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor.mockapi.bucket import MessagesLimiter, TokenBucket

# Float slack for sums of many float refills; far below one token or request.
EPS = 1e-6

per_minutes = st.one_of(st.none(), st.floats(min_value=1.0, max_value=600.0))
bursts = st.floats(min_value=0.05, max_value=5.0)
arrivals = st.lists(
    st.tuples(
        st.floats(min_value=0.0, max_value=2.0),  # gap since the previous arrival
        st.integers(min_value=1, max_value=12),  # input tokens
        st.integers(min_value=0, max_value=20),  # output tokens
        st.floats(min_value=0.0, max_value=1.5),  # latency: output is taken this much later
    ),
    max_size=80,
)


@dataclass
class Run:
    """What a replay admitted and took, each as (time, amount), and the output bucket's debt."""

    requests: list[tuple[float, float]] = field(default_factory=list)
    inputs: list[tuple[float, float]] = field(default_factory=list)
    outputs: list[tuple[float, float]] = field(default_factory=list)
    debt_after: dict[float, float] = field(default_factory=dict)  # time -> debt after its events


def replay(limiter: MessagesLimiter, steps: list[tuple[float, int, int, float]]) -> Run:
    """Offer each arrival in turn; settle each admitted one's output after its latency."""
    run = Run()
    pending: list[tuple[float, int, int]] = []  # (settle time, order, output tokens)
    now = 0.0

    def note_debt(at: float) -> None:
        if limiter.output is not None:
            run.debt_after[at] = max(0.0, -limiter.output.level(at))

    def settle_until(t: float) -> None:
        while pending and pending[0][0] <= t:
            at, _, output = heapq.heappop(pending)
            limiter.settle_output(at, output_tokens=output)
            run.outputs.append((at, output))
            note_debt(at)

    for order, (gap, given_in, output, latency) in enumerate(steps):
        now += gap
        settle_until(now)
        if limiter.try_admit(now, input_tokens=given_in).admitted:
            run.requests.append((now, 1.0))
            run.inputs.append((now, given_in))
            heapq.heappush(pending, (now + latency, order, output))
        note_debt(now)
    settle_until(math.inf)
    return run


def worst_intervals(events: list[tuple[float, float]]) -> list[tuple[float, float, float]]:
    """Return (start, end, amount) for every interval from one event's time to a later one's.

    The most a bound ``capacity + rate * T`` can be exceeded by is over such an interval: any
    other interval holds the same events and is at least as long.
    """
    events = sorted(events)
    out = []
    for i, (start, _) in enumerate(events):
        total = 0.0
        for end, amount in events[i:]:
            total += amount
            out.append((start, end, total))
    return out


@settings(max_examples=300, deadline=None)
@given(per_minutes, per_minutes, per_minutes, bursts, arrivals)
def test_no_interval_admits_more_than_capacity_plus_rate_times_its_length(
    rpm, itpm, otpm, burst_s, steps
):
    """Requests, input: <= capacity + rate * T in any interval; output: plus its end's debt."""
    limiter = MessagesLimiter(rpm=rpm, itpm=itpm, otpm=otpm, burst_s=burst_s)
    run = replay(limiter, steps)
    for bucket, events in ((limiter.requests, run.requests), (limiter.input, run.inputs)):
        if bucket is None:
            continue
        for start, end, amount in worst_intervals(events):
            assert amount <= bucket.capacity + bucket.rate_per_s * (end - start) + EPS
    if limiter.output is not None:
        for start, end, amount in worst_intervals(run.outputs):
            bound = limiter.output.capacity + limiter.output.rate_per_s * (end - start)
            assert amount <= bound + run.debt_after[end] + EPS


@settings(max_examples=300, deadline=None)
@given(per_minutes, per_minutes, per_minutes, bursts, arrivals)
def test_retry_after_is_exact(rpm, itpm, otpm, burst_s, steps):
    """A refused request fits at now + retry_after if nothing else happens, and not earlier."""
    limiter = MessagesLimiter(rpm=rpm, itpm=itpm, otpm=otpm, burst_s=burst_s)
    now = 0.0
    for gap, given_in, output, _ in steps:
        now += gap
        before = copy.deepcopy(limiter)
        decision = limiter.try_admit(now, input_tokens=given_in)
        if decision.admitted:
            limiter.settle_output(now, output_tokens=output)  # debts happen
            continue
        if decision.never:
            assert limiter.input is not None
            assert given_in > limiter.input.capacity
            continue
        later = copy.deepcopy(before)
        assert later.try_admit(now + decision.retry_after_s, input_tokens=given_in).admitted
        if decision.retry_after_s > 1e-3:
            earlier = copy.deepcopy(before)
            early = now + decision.retry_after_s - 1e-4
            assert not earlier.try_admit(early, input_tokens=given_in).admitted


def test_60_rpm_with_a_one_second_burst_is_one_request_a_second():
    """Anthropic's example: 60 RPM may be enforced as 1 request a second."""
    limiter = MessagesLimiter(rpm=60, itpm=None, otpm=None, burst_s=1.0)
    assert limiter.try_admit(0.0, input_tokens=1).admitted
    refused = limiter.try_admit(0.25, input_tokens=1)
    assert (refused.admitted, refused.short, refused.retry_after_s) == (False, ("requests",), 0.75)
    assert limiter.try_admit(1.0, input_tokens=1).admitted
    assert not limiter.try_admit(1.999, input_tokens=1).admitted


def test_a_long_burst_lets_a_minute_through_at_once():
    """burst_s=60 holds a whole minute's worth: 50 requests at once, then one every 1.2 s."""
    limiter = MessagesLimiter(rpm=50, itpm=None, otpm=None, burst_s=60.0)
    assert all(limiter.try_admit(0.0, input_tokens=1).admitted for _ in range(50))
    refused = limiter.try_admit(0.0, input_tokens=1)
    assert refused.retry_after_s == pytest.approx(1.2)


def test_a_small_rate_still_holds_one_request():
    """The capacity is at least 1, so 30 RPM over 1 s admits one request, then one every 2 s."""
    bucket = TokenBucket(per_minute=30, burst_s=1.0)
    assert bucket.capacity == 1.0
    bucket.take(0.0, 1.0)
    assert bucket.seconds_until(0.0, 1.0) == 2.0


def test_input_beyond_the_capacity_never_fits():
    """Input tokens above the input bucket's capacity are refused for good (retry_after inf)."""
    limiter = MessagesLimiter(rpm=None, itpm=6_000, otpm=None, burst_s=1.0)  # holds 100
    assert limiter.try_admit(0.0, input_tokens=100).admitted
    waiting = limiter.try_admit(0.0, input_tokens=100)
    assert (waiting.never, waiting.retry_after_s) == (False, 1.0)
    never = limiter.try_admit(0.0, input_tokens=101)
    assert never.never
    assert never.short == ("input tokens",)


def test_output_is_taken_when_produced_and_its_debt_blocks_admission():
    """Output may drive its bucket below zero; nothing is admitted until the debt is repaid."""
    limiter = MessagesLimiter(rpm=None, itpm=None, otpm=600, burst_s=1.0)  # holds 10, 10/s
    assert limiter.try_admit(0.0, input_tokens=1).admitted
    assert limiter.try_admit(0.0, input_tokens=1).admitted  # output not taken yet
    limiter.settle_output(0.5, output_tokens=25)
    limiter.settle_output(0.5, output_tokens=25)
    assert limiter.output is not None
    assert limiter.output.level(0.5) == -40.0
    refused = limiter.try_admit(0.5, input_tokens=1)
    assert refused.short == ("output tokens",)
    assert not limiter.try_admit(4.5, input_tokens=1).admitted  # exactly 0 is not > 0
    assert limiter.try_admit(0.5 + refused.retry_after_s, input_tokens=1).admitted


def test_headers_state_reports_the_level_per_minute():
    """A bucket's state: its level, the per-minute figure it stands for, and the time to full."""
    bucket = TokenBucket(per_minute=600, burst_s=1.0)  # holds 10, refills 10/s
    bucket.take(0.0, 4.0)
    state = bucket.state(0.1)
    assert state.level == pytest.approx(7.0)
    assert state.per_minute_left == pytest.approx(420.0)
    assert state.full_in_s == pytest.approx(0.3)
    bucket.take(0.1, 20.0)  # a debt reads as nothing left
    assert bucket.state(0.1).per_minute_left == 0.0


def test_time_never_goes_backwards():
    """A bucket refuses to be read at an earlier time than it was last changed."""
    bucket = TokenBucket(per_minute=60, burst_s=1.0)
    bucket.take(5.0, 1.0)
    with pytest.raises(ValueError, match="backwards"):
        bucket.level(4.0)
