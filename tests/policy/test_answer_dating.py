"""Dating calls by their answers: the first window, and late answers from a steady API."""

import pytest

from conveyor.policy.answer_dating import (
    JUDGE_EVERY,
    SAMPLE,
    STEADY_SPREAD,
    UNMOVED,
    AnswerDating,
)

WINDOW_S = 1.0
MARGIN_S = 0.01


def _warm(dating: AnswerDating, rtts: list[float], start: float = 2.0) -> float:
    """Answer one call per 10 ms past the first window, with round trips `rtts`; return time."""
    t = start
    for rtt in rtts:
        dating.date(t, t + rtt, ok=True)
        t += 0.01
    return t


def test_calls_of_the_first_window_are_dated_at_their_answer_whatever_it_was():
    dating = AnswerDating(window_s=WINDOW_S, margin_s=MARGIN_S)
    dating.admitted(10.0)
    assert dating.date(10.0, 10.05, ok=True) == 10.05
    assert dating.date(10.99, 11.2, ok=False) == 11.2  # a failure too: the API may count it
    # Sent past the first window, on an API not yet judged: kept.
    assert dating.date(11.0, 11.05, ok=True) is None


def test_a_steady_api_s_late_answer_moves_its_call_by_the_lateness():
    dating = AnswerDating(window_s=WINDOW_S, margin_s=MARGIN_S)
    dating.admitted(0.0)
    # Round trips of 50 to 54 ms: fastest (10th percentile) 50, median 52: steady.
    t = _warm(dating, [0.050 + 0.001 * (i % 5) for i in range(JUDGE_EVERY)])
    assert dating.steady
    assert dating.fastest_s == pytest.approx(0.050)
    # A call held 40 ms before the API stamped it: answered 40 ms late, dated 40 ms later
    # less the half margin left to absorb any call's lateness.
    assert dating.date(t, t + 0.090, ok=True) == pytest.approx(t + 0.040 - MARGIN_S * UNMOVED)
    assert dating.moved == 1
    assert dating.moved_s == pytest.approx(0.040 - MARGIN_S * UNMOVED)
    # Late by less than half the margin: the margin absorbs it. A failure: kept.
    assert dating.date(t, t + 0.050 + MARGIN_S * UNMOVED * 0.9, ok=True) is None
    assert dating.date(t, t + 0.050 + MARGIN_S * UNMOVED * 1.1, ok=True) is not None
    assert dating.date(t, t + 0.500, ok=False) is None


def test_failures_past_the_first_window_are_neither_moved_nor_sampled():
    """Only successes are sampled: 50 slow failures leave the API unjudged, nothing moved."""
    dating = AnswerDating(window_s=WINDOW_S, margin_s=MARGIN_S)
    dating.admitted(0.0)
    t = 2.0
    for _ in range(JUDGE_EVERY):
        assert dating.date(t, t + 0.050, ok=False) is None
        t += 0.01
    assert dating.fastest_s == 0.0  # never judged
    assert not dating.steady


def test_the_first_window_s_successes_are_sampled():
    """Answers of the first window count toward the first judgement (failures do not)."""
    dating = AnswerDating(window_s=WINDOW_S, margin_s=MARGIN_S)
    dating.admitted(0.0)
    for i in range(JUDGE_EVERY):
        dating.date(i * 0.01, i * 0.01 + 0.050, ok=True)  # all within the first window
    dating.date(0.6, 0.7, ok=False)
    assert dating.steady
    assert dating.fastest_s == pytest.approx(0.050)


def test_a_call_answered_before_its_date_teaches_nothing():
    """A round trip of zero or less (dated at its answer already) is not a sample."""
    dating = AnswerDating(window_s=WINDOW_S, margin_s=MARGIN_S)
    dating.admitted(0.0)
    for i in range(JUDGE_EVERY):
        assert dating.date(2.0 + i, 2.0 + i, ok=True) is None
    assert dating.fastest_s == 0.0  # never judged


def test_one_call_that_looks_impossibly_fast_does_not_move_the_others():
    """A call dated late as it went out (a stalled loop) shows a tiny round trip: ignored."""
    dating = AnswerDating(window_s=WINDOW_S, margin_s=MARGIN_S)
    dating.admitted(0.0)
    t = _warm(dating, [0.001] + [0.050] * (JUDGE_EVERY - 1))
    assert dating.fastest_s == pytest.approx(0.050)
    assert dating.date(t, t + 0.090, ok=True) == pytest.approx(t + 0.040 - MARGIN_S * UNMOVED)


def test_an_api_whose_latency_varies_widely_moves_nothing():
    dating = AnswerDating(window_s=WINDOW_S, margin_s=MARGIN_S)
    dating.admitted(0.0)
    # Round trips from 0.1 to 2 s (an LLM writing answers of any length).
    t = _warm(dating, [0.1 + 0.038 * i for i in range(JUDGE_EVERY)])
    assert not dating.steady
    assert dating.date(t, t + 1.5, ok=True) is None


def test_a_stall_that_holds_many_calls_at_once_does_not_end_the_dating():
    dating = AnswerDating(window_s=WINDOW_S, margin_s=MARGIN_S)
    dating.admitted(0.0)
    # 44% of the sample stalled (300 ms): the median is still the steady 50 ms.
    _warm(dating, [0.050] * 28 + [0.300] * 22)
    assert dating.steady
    # The API slowed for good: most of the sample slow, not steady any more.
    _warm(dating, [0.300] * JUDGE_EVERY, start=5.0)
    assert not dating.steady


def test_the_judgement_uses_only_the_last_sample():
    dating = AnswerDating(window_s=WINDOW_S, margin_s=MARGIN_S)
    dating.admitted(0.0)
    _warm(dating, [0.010] * SAMPLE)  # fast at first
    assert dating.fastest_s == pytest.approx(0.010)
    _warm(dating, [0.080] * SAMPLE, start=10.0)  # then slower for a whole sample
    assert dating.fastest_s == pytest.approx(0.080)
    assert dating.steady


def test_the_spread_limit_is_stated_in_margins():
    dating = AnswerDating(window_s=WINDOW_S, margin_s=MARGIN_S)
    dating.admitted(0.0)
    limit = STEADY_SPREAD * MARGIN_S
    _warm(dating, [0.050] * 10 + [0.050 + limit * 1.01] * 40)
    assert not dating.steady
    _warm(dating, [0.050] * 20 + [0.050 + limit * 0.99] * 180, start=10.0)
    assert dating.steady
