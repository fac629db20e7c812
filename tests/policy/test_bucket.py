"""The token bucket, proven over arbitrary arrivals, costs and settlements."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor.policy.bucket import TokenBucket

arrivals = st.lists(
    st.tuples(
        st.floats(min_value=0.0, max_value=2.0),  # gap since the previous arrival, seconds
        st.floats(min_value=0.0, max_value=1.0),  # cost, as a fraction of the capacity
        st.floats(min_value=0.0, max_value=3.0),  # what it really cost, x its estimate
    ),
    min_size=1,
    max_size=60,
)


def _simulate(
    bucket: TokenBucket, plan: list[tuple[float, float, float]]
) -> list[tuple[float, float]]:
    """Admit first come, first served, settling each call at once; (time, real cost) pairs."""
    admitted: list[tuple[float, float]] = []
    arrival = ready = 0.0
    for gap, fraction, real in plan:
        arrival += gap
        cost = fraction * bucket.capacity
        now = max(arrival, ready)
        now += bucket.wait_s(now, cost)
        assert bucket.wait_s(now, cost) == 0.0
        bucket.admit(now, cost)
        if bucket.debt:
            bucket.produce(now, cost * real)  # its answer, written at once
        else:
            bucket.settle(cost * real - cost)
        admitted.append((now, cost * real))
        ready = now
    return admitted


@settings(max_examples=300, deadline=None)
@given(plan=arrivals, rate=st.floats(0.5, 50.0), capacity=st.floats(1.0, 100.0))
def test_no_interval_admits_more_than_the_capacity_and_the_refill(plan, rate, capacity):
    """Over any [a, b], what was admitted (at its real cost) is <= capacity + rate * (b - a).

    A strict bucket (the call must fit) settled above its estimate may overdraw once, by the
    last call's overrun; so the bound holds for what was booked when each call was admitted.
    """
    bucket = TokenBucket(rate_per_s=rate, capacity=capacity)
    plan = [(gap, fraction, 1.0) for gap, fraction, _ in plan]
    admitted = _simulate(bucket, plan)
    for i, (start, _) in enumerate(admitted):
        for end, _ in admitted[i:]:
            inside = sum(c for t, c in admitted if start <= t <= end)
            assert inside <= capacity + rate * (end - start) + 1e-6


@settings(max_examples=300, deadline=None)
@given(plan=arrivals, rate=st.floats(0.5, 50.0), capacity=st.floats(1.0, 100.0))
def test_a_debt_bucket_overdraws_by_at_most_one_call(plan, rate, capacity):
    """Output tokens: a call needs the bucket above zero, then its real cost is taken.

    Over any [a, b], the real costs admitted are <= capacity + rate * (b - a) + the last one's.
    """
    bucket = TokenBucket(rate_per_s=rate, capacity=capacity, debt=True)
    admitted = _simulate(bucket, plan)
    for i, (start, _) in enumerate(admitted):
        for j in range(i, len(admitted)):
            end = admitted[j][0]
            inside = sum(c for t, c in admitted[i : j + 1] if start <= t <= end)
            assert inside <= capacity + rate * (end - start) + admitted[j][1] + 1e-6


def test_a_full_bucket_lets_its_capacity_go_at_once_then_refills_at_its_rate():
    bucket = TokenBucket(rate_per_s=10.0, capacity=5.0)
    for _ in range(5):
        assert bucket.wait_s(0.0, 1.0) == 0.0
        bucket.admit(0.0, 1.0)
    assert bucket.wait_s(0.0, 1.0) == pytest.approx(0.1)
    assert bucket.wait_s(0.0, 3.0) == pytest.approx(0.3)
    assert bucket.level(0.25) == pytest.approx(2.5)


def test_a_cost_above_the_capacity_never_fits_unless_the_bucket_takes_debt():
    assert math.isinf(TokenBucket(rate_per_s=1.0, capacity=5.0).wait_s(0.0, 6.0))
    debt = TokenBucket(rate_per_s=1.0, capacity=5.0, debt=True)
    assert debt.wait_s(0.0, 60.0) == 0.0  # needs only a margin: half the bucket
    debt.admit(0.0, 60.0)
    assert debt.level(0.0) == 5.0  # nothing taken until the answer is written
    debt.produce(0.0, 60.0)  # 55 below zero: the next waits until it holds its margin
    assert debt.wait_s(0.0, 1.0) == pytest.approx(57.5)
    assert debt.level(55.0) == pytest.approx(0.0)


def test_a_debt_bucket_mirrors_the_api_which_wastes_refill_while_full():
    """Output is taken when written: a full bucket does not bank the refill of calls in flight.

    Charged at admission and corrected at the answer, four calls of 40 would leave 120 of
    200 after 0.4 s; the API, full all along, is at 40, and so is the mirror.
    """
    debt = TokenBucket(rate_per_s=200.0, capacity=200.0, debt=True)
    for _ in range(4):
        assert debt.wait_s(0.0, 64.0) == 0.0
        debt.admit(0.0, 64.0)
    for _ in range(4):
        debt.produce(0.4, 40.0)
    assert debt.level(0.4) == pytest.approx(40.0)


def test_reservations_with_room_let_in_together_no_more_than_the_room_allows():
    """A full spread of 200: above zero lets three calls of 90 in at once (270), room 0.5 two.

    Calls let in together are answered together; with room, what may go at once is the level
    less the last call's need, so a lump of answers stays within the mirror's half bucket
    plus one call. A call reserving more than the room needs the room only.
    """

    def at_once(room: float, cost: float) -> int:
        spread = TokenBucket(rate_per_s=200.0, capacity=200.0, debt=True, mirror=False)
        admitted = 0
        while spread.wait_s(0.0, cost, room=room) == 0.0:
            spread.admit(0.0, cost)
            admitted += 1
        return admitted

    assert at_once(0.0, 90.0) == 3
    assert at_once(0.5, 90.0) == 2
    assert at_once(0.5, 150.0) == 1
    assert at_once(0.5, 39.0) == 5  # each needing its own 39: 200 holds five
    spread = TokenBucket(rate_per_s=200.0, capacity=200.0, debt=True, mirror=False)
    spread.admit(0.0, 300.0)  # 100 below zero: the next needs 100 of room, not its 300
    assert spread.wait_s(0.0, 300.0, room=0.5) == pytest.approx(1.0, abs=1e-6)


def test_a_refund_gives_back_but_never_fills_above_the_capacity():
    bucket = TokenBucket(rate_per_s=1.0, capacity=5.0)
    bucket.admit(0.0, 4.0)
    bucket.settle(-3.0)  # it used 1 of the 4 it booked
    assert bucket.level(0.0) == pytest.approx(4.0)
    bucket.settle(-10.0)
    assert bucket.level(0.0) == pytest.approx(5.0)


def test_a_new_rate_keeps_what_is_owed():
    bucket = TokenBucket(rate_per_s=10.0, capacity=10.0)
    bucket.admit(0.0, 10.0)  # empty: owed 10
    bucket.set_rate(0.0, 5.0, 5.0)  # the API stated half our rate
    assert bucket.level(0.0) == pytest.approx(-5.0)  # 10 owed on a bucket of 5
    assert bucket.wait_s(0.0, 1.0) == pytest.approx(1.2)  # 6 to refill at 5 a second


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="refill rate"):
        TokenBucket(rate_per_s=0.0, capacity=1.0)
    with pytest.raises(ValueError, match="capacity"):
        TokenBucket(rate_per_s=1.0, capacity=math.nan)
