"""The strict sliding window, on plain numbers: no clock, no loop."""

import copy
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor.mockapi.window import Admission, ServerWindow

starts = st.floats(min_value=0.0, max_value=1e6)
gaps = st.lists(
    st.tuples(st.floats(min_value=0.0, max_value=2.0), st.integers(min_value=1, max_value=40)),
    max_size=120,
)
window_lengths = st.floats(min_value=0.01, max_value=5.0)
request_shares = st.one_of(st.none(), st.integers(min_value=1, max_value=12))
token_shares = st.one_of(st.none(), st.integers(min_value=1, max_value=200))


Step = tuple[float, int, Admission, ServerWindow, list[tuple[float, int]]]


def replay(
    window: ServerWindow, start: float, steps: list[tuple[float, int]]
) -> tuple[list[tuple[float, int]], list[Step]]:
    """Offer each (gap, cost) in turn; return the admitted (time, cost) and every admission.

    Each admission comes with a copy of the window just before it and the admissions before it.
    """
    now = start
    admitted: list[tuple[float, int]] = []
    admissions: list[Step] = []
    for gap, cost in steps:
        now += gap
        before = copy.deepcopy(window)
        admission = window.try_admit(now, cost)
        admissions.append((now, cost, admission, before, list(admitted)))
        if admission.admitted:
            admitted.append((now, cost))
    return admitted, admissions


@settings(max_examples=300)
@given(starts, gaps, window_lengths, request_shares, token_shares)
def test_no_window_ever_holds_more_than_the_share(start, steps, window_s, max_requests, max_tokens):
    """Every window [t, t + window_s) starting at an admitted time holds at most both shares."""
    window = ServerWindow(window_s=window_s, max_requests=max_requests, max_tokens=max_tokens)
    admitted, _ = replay(window, start, steps)
    for t, _cost in admitted:
        inside = [c for u, c in admitted if t <= u < t + window_s]
        assert max_requests is None or len(inside) <= max_requests
        assert max_tokens is None or sum(inside) <= max_tokens


@settings(max_examples=300)
@given(starts, gaps, window_lengths, request_shares, token_shares)
def test_retry_after_is_exact(start, steps, window_s, max_requests, max_tokens):
    """A rejected request fits at now + retry_after, and not a microsecond earlier."""
    window = ServerWindow(window_s=window_s, max_requests=max_requests, max_tokens=max_tokens)
    _, admissions = replay(window, start, steps)
    for now, cost, admission, before, _ in admissions:
        if admission.admitted or admission.never:
            continue
        wait = admission.retry_after_s
        assert wait > 0
        if wait > 1e-6:
            early = copy.deepcopy(before)
            assert not early.try_admit(now + wait - 1e-6, cost).admitted
        assert before.try_admit(now + wait, cost).admitted


@settings(max_examples=300)
@given(starts, gaps, window_lengths, request_shares, token_shares)
def test_rejects_only_what_would_overflow(start, steps, window_s, max_requests, max_tokens):
    """A request is refused only if the unexpired admissions plus it exceed a share."""
    window = ServerWindow(window_s=window_s, max_requests=max_requests, max_tokens=max_tokens)
    _, admissions = replay(window, start, steps)
    for now, cost, admission, _, earlier in admissions:
        if admission.admitted:
            continue
        live = [c for u, c in earlier if u + window_s > now]
        too_many = max_requests is not None and len(live) + 1 > max_requests
        too_heavy = max_tokens is not None and sum(live) + cost > max_tokens
        assert too_many or too_heavy


@given(st.integers(min_value=1, max_value=100), st.integers(min_value=1, max_value=100))
def test_a_cost_above_the_token_share_never_fits(share, extra):
    """A request costing more than the whole token share is refused with an infinite wait."""
    window = ServerWindow(window_s=1.0, max_requests=None, max_tokens=share)
    admission = window.try_admit(0.0, share + extra)
    assert not admission.admitted
    assert admission.never
    assert math.isinf(admission.retry_after_s)
    assert window.try_admit(0.0, share).admitted


def test_requests_wait_for_the_oldest_to_expire():
    """With a share of 2 per 10 s, the third request waits for the first to age out."""
    window = ServerWindow(window_s=10.0, max_requests=2, max_tokens=None)
    assert window.try_admit(0.0, 1).admitted
    assert window.try_admit(4.0, 1).admitted
    third = window.try_admit(5.0, 1)
    assert (third.admitted, third.retry_after_s) == (False, 5.0)
    assert third.remaining_requests == 0
    assert third.reset_s == 9.0
    assert window.try_admit(10.0, 1).admitted


def test_tokens_wait_until_enough_have_expired():
    """A heavy request waits until enough of the oldest costs have aged out, not just one."""
    window = ServerWindow(window_s=10.0, max_requests=None, max_tokens=100)
    for t, cost in ((0.0, 30), (1.0, 30), (2.0, 30)):
        assert window.try_admit(t, cost).admitted
    admission = window.try_admit(3.0, 65)
    assert admission.remaining_tokens == 10
    assert admission.retry_after_s == 8.0  # the entries of t=0 and t=1 must go: at t=11
    assert window.try_admit(11.0, 65).admitted


def test_remaining_and_reset_count_this_request():
    """An admitted request's admission reports what is left after it and when all frees up."""
    window = ServerWindow(window_s=60.0, max_requests=3, max_tokens=50)
    admission = window.try_admit(5.0, 20)
    assert (admission.remaining_requests, admission.remaining_tokens) == (2, 30)
    assert admission.reset_s == 60.0
    assert window.usage(35.0).reset_s == 30.0
    assert window.usage(65.0).remaining_requests == 3


def test_no_limits_keep_no_state():
    """Without shares every request is admitted and nothing is remembered."""
    window = ServerWindow(window_s=1.0, max_requests=None, max_tokens=None)
    admissions = [window.try_admit(0.0, 10**9) for _ in range(1000)]
    assert all(d.admitted for d in admissions)
    assert window.usage(0.0).remaining_requests is None


def test_a_long_run_stays_strict_after_compaction():
    """Thousands of arrivals (the lists compact) still never overflow any window."""
    window = ServerWindow(window_s=1.0, max_requests=700, max_tokens=5000)
    admitted = []
    for i in range(20_000):
        now = i * 0.0005
        if window.try_admit(now, 1 + i % 9).admitted:
            admitted.append((now, 1 + i % 9))
    assert len(admitted) > 5000
    j = 0
    for i, (t, _) in enumerate(admitted):
        while admitted[j][0] + 1.0 <= t:
            j += 1
        inside = admitted[j : i + 1]
        assert len(inside) <= 700
        assert sum(c for _, c in inside) <= 5000


def test_reset_forgets_everything():
    """After reset the whole share is available again."""
    window = ServerWindow(window_s=60.0, max_requests=1, max_tokens=None)
    assert window.try_admit(0.0, 1).admitted
    window.reset()
    assert window.try_admit(1.0, 1).admitted


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"window_s": 0.0, "max_requests": 1, "max_tokens": None}, "window_s"),
        ({"window_s": 1.0, "max_requests": 0, "max_tokens": None}, "max_requests"),
        ({"window_s": 1.0, "max_requests": None, "max_tokens": 0}, "max_tokens"),
    ],
)
def test_bad_shares_are_refused(kwargs, match):
    """A window that could admit nothing is a programming error, said so."""
    with pytest.raises(ValueError, match=match):
        ServerWindow(**kwargs)


def test_time_must_not_go_backwards():
    """An arrival earlier than the last one is refused: the caller's clock is broken."""
    window = ServerWindow(window_s=1.0, max_requests=1, max_tokens=None)
    window.try_admit(5.0, 1)
    with pytest.raises(ValueError, match="backwards"):
        window.try_admit(4.0, 1)


def test_zero_cost_is_refused():
    """Every request costs at least a token."""
    window = ServerWindow(window_s=1.0, max_requests=None, max_tokens=10)
    with pytest.raises(ValueError, match="at least 1"):
        window.try_admit(0.0, 0)
