"""Exact sliding-window admission and GCRA pacing, proven over arbitrary arrivals and costs."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor.policy.gcra import Gcra
from conveyor.policy.window import SlidingWindow

arrivals = st.lists(
    st.tuples(
        st.floats(min_value=0.0, max_value=2.0),  # gap since the previous arrival, seconds
        st.floats(min_value=0.01, max_value=1.0),  # cost, as a fraction of the share
    ),
    min_size=1,
    max_size=60,
)


def _simulate(
    window: SlidingWindow, requests: list[tuple[float, float]]
) -> list[tuple[float, float]]:
    """Admit requests first come, first served; return (admission time, cost) pairs."""
    admitted: list[tuple[float, float]] = []
    arrival = 0.0
    ready = 0.0
    for gap, fraction in requests:
        arrival += gap
        cost = fraction * window.share
        now = max(arrival, ready)
        now += window.wait_s(now, cost)
        assert window.wait_s(now, cost) == 0.0
        window.admit(now, cost)
        admitted.append((now, cost))
        ready = now
    return admitted


@settings(max_examples=300)
@given(
    requests=arrivals,
    share=st.floats(min_value=1.0, max_value=1000.0),
    window_s=st.floats(min_value=0.1, max_value=60.0),
)
def test_no_window_ever_admits_more_than_its_share(requests, share, window_s):
    """For any arrivals and costs, every window of window_s holds at most the share."""
    admitted = _simulate(SlidingWindow(share=share, window_s=window_s), requests)
    for end, _ in admitted:
        inside = math.fsum(c for t, c in admitted if end - window_s < t <= end)
        assert inside <= share * (1 + 1e-9)


@settings(max_examples=300)
@given(
    requests=arrivals,
    share=st.floats(min_value=1.0, max_value=1000.0),
    window_s=st.floats(min_value=0.1, max_value=60.0),
)
def test_every_wait_is_the_shortest_possible(requests, share, window_s):
    """No admission could have come any earlier: a moment before, the window was too full."""
    admitted = _simulate(SlidingWindow(share=share, window_s=window_s), requests)
    arrival = 0.0
    ready = 0.0
    for i, ((gap, _), (when, cost)) in enumerate(zip(requests, admitted, strict=True)):
        arrival += gap
        earliest = max(arrival, ready)
        # Waits end a nanosecond past the boundary (a pad against float rounding); half a
        # microsecond before the admission, the window must still have been too full.
        if when > earliest + 1e-6:
            just_before = when - 5e-7
            before = [(t, c) for t, c in admitted[:i] if just_before - window_s < t]
            assert math.fsum(c for _, c in before) + cost > share
        ready = when


def test_a_full_window_waits_until_the_oldest_leaves():
    """Ten per second, eleven at t=0: the eleventh starts when the first leaves, at t=1."""
    window = SlidingWindow(share=10, window_s=1.0)
    for _ in range(10):
        window.admit(0.0, 1)
    assert window.wait_s(0.0, 1) == pytest.approx(1.0)
    assert window.wait_s(1.0, 1) == 0.0


def test_settling_refunds_and_charges():
    """Replacing an estimate by the real cost frees or takes budget at once."""
    window = SlidingWindow(share=100, window_s=1.0)
    entry = window.admit(0.0, 80)
    assert window.wait_s(0.0, 50) == pytest.approx(1.0)
    window.settle(entry, 30)
    assert window.wait_s(0.0, 50) == 0.0
    window.settle(entry, 90)
    assert window.used(0.5) == 90


def test_a_cost_above_the_share_never_fits():
    """A request larger than the whole share waits forever (callers refuse it up front)."""
    assert SlidingWindow(share=10, window_s=1.0).wait_s(0.0, 11) == math.inf


@given(costs=st.lists(st.floats(min_value=0.1, max_value=5.0), min_size=1, max_size=50))
def test_gcra_spaces_admissions_by_their_cost(costs):
    """Paced: each admission waits for the previous one's cost times the interval."""
    gcra = Gcra(limit=10, period_s=1.0)
    now = 0.0
    previous_cost = None
    for cost in costs:
        wait = gcra.wait_s(now, cost)
        if previous_cost is not None:
            assert wait == pytest.approx(previous_cost * 0.1)
        now += wait
        gcra.admit(now, cost)
        previous_cost = cost


def test_gcra_burst_lets_that_many_go_at_once():
    """burst=3: three requests at t=0, the fourth paced."""
    gcra = Gcra(limit=10, period_s=1.0, burst=3)
    waits = []
    for _ in range(5):
        waits.append(gcra.wait_s(0.0, 1))
        if waits[-1] == 0:
            gcra.admit(0.0, 1)
    assert waits[:4] == [0.0, 0.0, 0.0, 0.0]
    assert waits[4] == pytest.approx(0.1)


def test_an_entry_dated_later_does_not_hold_younger_ones_in_the_window():
    """A call dated again at its answer leaves the window then; those behind it, on time."""
    window = SlidingWindow(share=2, window_s=1.0)
    first = window.admit(0.0, 1)
    window.admit(0.1, 1)
    window.redate(first, 0.5)
    assert window.used(1.2) == 1  # the one of 0.1 has left; the one dated 0.5 has not
    assert window.used(1.5) == 0


def test_the_wait_counts_the_entries_that_leave_first_not_the_first_admitted():
    """Full, with the first admission dated later: the next fits when the second leaves."""
    window = SlidingWindow(share=2, window_s=1.0)
    first = window.admit(0.0, 1)
    window.admit(0.1, 1)
    window.redate(first, 0.5)
    assert window.wait_s(0.2, 1) == pytest.approx(0.9)  # at 1.1, when the one of 0.1 leaves


def test_an_entry_is_never_dated_earlier():
    """Dating an admission earlier could overfill a window: it is ignored."""
    window = SlidingWindow(share=1, window_s=1.0)
    entry = window.admit(0.5, 1)
    window.redate(entry, 0.2)
    assert entry.time == 0.5
    assert window.wait_s(1.4, 1) > 0


def _redating_steps(gap_s: float, size: int) -> st.SearchStrategy[list[tuple[float, ...]]]:
    """Steps of (time passing, cost, which recent admission to date again, how much later)."""
    step = st.tuples(
        st.floats(min_value=0.0, max_value=gap_s),
        st.floats(min_value=0.1, max_value=3.0),
        st.integers(min_value=0, max_value=5),
        st.floats(min_value=0.0, max_value=0.8),
    )
    return st.lists(step, min_size=1, max_size=size)


@settings(max_examples=300)
@given(steps=_redating_steps(0.5, 60))
def test_the_window_counts_exactly_what_is_dated_inside_it_after_any_redating(steps):
    """Whatever is dated again, used() is the sum of the costs dated in (now - window, now]."""
    window = SlidingWindow(share=1e9, window_s=1.0)
    now, entries = 0.0, []
    for gap, cost, back, later in steps:
        now += gap
        entries.append(window.admit(now, cost))
        target = entries[max(len(entries) - 1 - back, 0)]
        window.redate(target, min(target.time + later, now))
        # The brute force over every admission ever made, at its current date.
        expected = math.fsum(e.cost for e in entries if now - 1.0 < e.time <= now)
        assert window.used(now) == pytest.approx(expected, abs=1e-9)


@settings(max_examples=300)
@given(steps=_redating_steps(0.3, 40), cost=st.floats(min_value=0.1, max_value=5.0))
def test_the_wait_after_any_redating_is_the_earliest_fit(steps, cost):
    """wait_s is the first moment the costs dated inside the window leave room for `cost`."""
    window = SlidingWindow(share=6.0, window_s=1.0)
    now, entries = 0.0, []
    for gap, each, back, later in steps:
        now += gap
        if window.wait_s(now, each) == 0.0:
            entries.append(window.admit(now, each))
        if entries:
            target = entries[max(len(entries) - 1 - back, 0)]
            window.redate(target, min(target.time + later, now))
    wait = window.wait_s(now, cost)
    live = sorted((e.time, e.cost) for e in entries if e.time > now - 1.0)
    # The brute force: leaving in date order, the first moment enough has left.
    need = math.fsum(c for _, c in live) + cost - 6.0
    expected = 0.0
    for time, each in live:
        if need <= 1e-9:
            break
        need -= each
        expected = time + 1.0 - now
    assert wait == pytest.approx(max(expected, 0.0), abs=1e-6)
