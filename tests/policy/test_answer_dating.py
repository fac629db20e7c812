"""Dating calls by their answers: the first window, and late answers from a steady API."""

import pytest

from conveyor.policy.answer_dating import JUDGE_EVERY, SAMPLE, STEADY_SPREAD, AnswerDating

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
    # Round trips of 50 to 54 ms: a spread of 4 ms, within 2 margins (20 ms).
    t = _warm(dating, [0.050 + 0.001 * (i % 5) for i in range(JUDGE_EVERY)])
    assert dating.steady
    assert dating.fastest_s == pytest.approx(0.050)
    # A call held 40 ms before the API stamped it: answered 40 ms late, dated 40 ms later.
    assert dating.date(t, t + 0.090, ok=True) == pytest.approx(t + 0.040)
    # The fastest round trip, or a failure: kept as sent.
    assert dating.date(t, t + 0.050, ok=True) is None
    assert dating.date(t, t + 0.500, ok=False) is None


def test_an_api_whose_latency_varies_widely_moves_nothing():
    dating = AnswerDating(window_s=WINDOW_S, margin_s=MARGIN_S)
    dating.admitted(0.0)
    # Round trips from 0.1 to 2 s (an LLM writing answers of any length).
    t = _warm(dating, [0.1 + 0.038 * i for i in range(JUDGE_EVERY)])
    assert not dating.steady
    assert dating.date(t, t + 1.5, ok=True) is None


def test_steadiness_is_judged_on_the_90th_percentile_so_a_few_stalls_do_not_end_it():
    dating = AnswerDating(window_s=WINDOW_S, margin_s=MARGIN_S)
    dating.admitted(0.0)
    # 45 steady round trips and 5 stalled ones (10%): the 90th percentile is still steady.
    rtts = [0.050] * (JUDGE_EVERY - 5) + [0.300] * 5
    _warm(dating, rtts)
    assert dating.steady
    # Half of them stalled: not steady any more at the next judgement.
    _warm(dating, [0.050, 0.300] * (JUDGE_EVERY // 2), start=5.0)
    assert not dating.steady


def test_the_judgement_uses_only_the_last_sample():
    dating = AnswerDating(window_s=WINDOW_S, margin_s=MARGIN_S)
    dating.admitted(0.0)
    _warm(dating, [0.010] * SAMPLE)  # fast at first
    assert dating.fastest_s == pytest.approx(0.010)
    _warm(dating, [0.080] * SAMPLE, start=10.0)  # then slower for a whole sample
    assert dating.fastest_s == pytest.approx(0.080)
    assert dating.steady


def test_the_spread_limit_is_two_margins():
    dating = AnswerDating(window_s=WINDOW_S, margin_s=MARGIN_S)
    dating.admitted(0.0)
    limit = STEADY_SPREAD * MARGIN_S
    _warm(dating, [0.050, 0.050 + limit * 1.01] * (JUDGE_EVERY // 2))
    assert not dating.steady
    _warm(dating, [0.050, 0.050 + limit * 0.99] * (SAMPLE // 2), start=10.0)
    assert dating.steady
