"""Dating a call by its answer, when the answer says the call reached the API late. Pure.

An exact window counts each call from the moment it left (`Slot.mark_sent`). The API counts it
from the moment it stamped it, which is later: the trip there, and any queue before the stamp
(a busy server, a server process not scheduled, a first connection). The window's margin
(`WINDOW_MARGIN`, 10 ms on a 1-second window) covers the usual difference. A call stamped
later than that, counted by us from its departure, leaves our window before it leaves the
API's, and a call admitted into the room it seemed to leave draws a 429.

The answer bounds the stamp: the API stamped the call before it answered. Two rules use it:

1. **The first window.** Its calls are dated when their answers arrive: an API seen cold (its
   first connections, its first answers) stamped calls of the first window 40-50 ms after
   they left. This keeps the second window back by about one latency, once per run.
2. **A steady API.** When the API's round trips are steady (the spread from the fastest to
   the median of the last `SAMPLE` is at most `STEADY_SPREAD` margins), time beyond the
   fastest round trip (`FASTEST`: the 10th percentile) is most likely time spent before the
   stamp. A call whose round trip took `e` longer than that is dated `e` later than it left
   (its answer's arrival less the fastest round trip), less the half of the margin that
   absorbs the lateness of every call (`UNMOVED`); a call late by less keeps its date. A stall
   at the API moves every call it held, and none draws a 429 one window later. On a steady
   API `e` is small for all but the stalled calls, so the cost is a fraction of the margin.
   An API whose latency varies widely (an LLM writing answers of any length) is not steady:
   its extra time is the answer's, and nothing is moved.

Only successful answers are sampled (a refusal comes back faster than any work).
"""

from __future__ import annotations

from collections import deque

__all__ = ["FASTEST", "SAMPLE", "STEADY_SPREAD", "UNMOVED", "AnswerDating"]

#: Round trips kept to judge the API steady and to find its fastest.
SAMPLE = 200
#: Round trips between two judgements (the sample's order statistics cost a sort).
JUDGE_EVERY = 50
#: The API is steady when its round trips, from the fastest to the median, spread over at
#: most this many window margins. The median, not a higher quantile: a stall makes many calls
#: slow at once, and must not end the dating of the very calls it held.
STEADY_SPREAD = 1.0
#: Lateness up to this fraction of the margin is left to the margin: a call late by less keeps
#: its date (a shared limiter saves a round trip), one late by more is moved by the rest. Any
#: two calls then differ by at most half the margin in what is left unmoved.
UNMOVED = 0.5
#: The "fastest" round trip is this quantile of the sample, not its minimum: one call dated
#: late when it went out (a stalled event loop) would look impossibly fast, and move the rest.
FASTEST = 0.1


class AnswerDating:
    """Says when a call answered at `now` should be dated (see the module docstring).

    Args:
        window_s: the enforcement window.
        margin_s: the window's margin (what the usual difference is absorbed by).
    """

    __slots__ = (
        "_fastest",
        "_first",
        "_margin_s",
        "_rtts",
        "_steady",
        "_until_judged",
        "moved",
        "moved_s",
        "window_s",
    )

    def __init__(self, *, window_s: float, margin_s: float) -> None:
        self.window_s = window_s
        self._margin_s = margin_s
        self._first: float | None = None
        self._rtts: deque[float] = deque(maxlen=SAMPLE)
        self._until_judged = JUDGE_EVERY
        self._fastest = 0.0
        self._steady = False
        #: Calls past the first window moved by their answers, and the seconds moved in all.
        self.moved = 0
        self.moved_s = 0.0

    @property
    def steady(self) -> bool:
        """Whether the API's round trips were last judged steady."""
        return self._steady

    @property
    def fastest_s(self) -> float:
        """The last sample's "fastest" round trip (`FASTEST`; 0.0 before the first judgement)."""
        return self._fastest

    def admitted(self, now: float) -> None:
        """Note an admission (the first one starts the first window)."""
        if self._first is None:
            self._first = now

    def date(self, sent_at: float, now: float, *, ok: bool) -> float | None:
        """The date for a call sent at `sent_at` and answered at `now`; None: keep its date.

        `ok`: the answer was a success (only successes are sampled).
        """
        first = self._first
        if first is not None and sent_at < first + self.window_s:
            if ok and now > sent_at:
                self._sample(now - sent_at)
            return now
        if not ok:
            return None
        rtt = now - sent_at
        if rtt <= 0:  # dated at its answer already: nothing to learn
            return None
        self._sample(rtt)
        allowed = self._margin_s * UNMOVED
        if not self._steady or rtt - self._fastest <= allowed:
            return None
        # Late by `rtt - fastest`; the margin absorbs `allowed` of it, as for any other call.
        self.moved += 1
        self.moved_s += rtt - self._fastest - allowed
        return now - self._fastest - allowed

    def _sample(self, rtt: float) -> None:
        self._rtts.append(rtt)
        self._until_judged -= 1
        if self._until_judged > 0:
            return
        self._until_judged = JUDGE_EVERY
        ordered = sorted(self._rtts)
        self._fastest = ordered[int(FASTEST * (len(ordered) - 1))]
        median = ordered[(len(ordered) - 1) // 2]
        self._steady = median - self._fastest <= STEADY_SPREAD * self._margin_s
