"""Exact admission over a strict sliding window: pure, over plain numbers.

Providers state limits per minute but enforce them over shorter windows (OpenAI documents that
60,000 requests per minute may be enforced as 1,000 per second). When the enforcement window
`window_s` is known, the guarantee is exact: for every window ``(t - window_s, t]``, the costs
admitted in it sum to at most `share`. Admissions are decided in time order (one event loop),
so the only window that admitting at `now` can overflow is the one ending at `now`: checking
``sum(costs in (now - window_s, now]) + cost <= share`` is both necessary and sufficient. The
wait, when it does not fit, is exact too: walk the log from the oldest entry until enough cost
would have left the window; that entry's time plus `window_s` is the earliest moment it fits.

This is the "sliding log" algorithm. It costs one entry per admission inside the window, which
for rate-limited work is small (the window holds at most `share` requests). The log is kept in
time order: an admission dated again later (`redate`: when its call went out, or when its
answer showed the server saw it late) moves to its new place, so that expiring the window
stays a walk from the front, and an entry dated late never holds younger ones in the window.
"""

from __future__ import annotations

import math
from collections import deque

__all__ = ["Entry", "SlidingWindow"]

_EPS = 1e-9
# Waits end this far past the exact boundary, so that float rounding in `time + window_s` can
# never put an admission a hair inside the window it must be outside of.
_PAD_S = 1e-9


class Entry:
    """One admission: when, and how much it costs (settled costs are changed in place)."""

    __slots__ = ("cost", "live", "time")

    def __init__(self, time: float, cost: float) -> None:
        self.time = time
        self.cost = cost
        self.live = True


class SlidingWindow:
    """At most `share` cost in any sliding window of `window_s` seconds."""

    __slots__ = ("_log", "_sum", "share", "window_s")

    def __init__(self, *, share: float, window_s: float) -> None:
        if not (share > 0 and window_s > 0):
            msg = f"share={share} and window_s={window_s} must both be > 0"
            raise ValueError(msg)
        self.share = share
        self.window_s = window_s
        self._log: deque[Entry] = deque()
        self._sum = 0.0

    def _expire(self, now: float) -> None:
        horizon = now - self.window_s
        log = self._log
        while log and log[0].time <= horizon:
            entry = log.popleft()
            entry.live = False
            self._sum -= entry.cost
        if not log:
            self._sum = 0.0  # no drift from float sums

    def used(self, now: float) -> float:
        """The cost admitted in the window ending at `now`."""
        self._expire(now)
        return self._sum

    def wait_s(self, now: float, cost: float) -> float:
        """Seconds from `now` until `cost` fits (0.0: it fits now; inf: it never will)."""
        if cost > self.share + _EPS:
            return math.inf
        self._expire(now)
        excess = self._sum + cost - self.share
        if excess <= _EPS:
            return 0.0
        freed = 0.0
        for entry in self._log:  # oldest first: the first to leave
            freed += entry.cost
            if freed >= excess - _EPS:
                return max(entry.time + self.window_s - now, 0.0) + _PAD_S
        return math.inf  # pragma: no cover - unreachable: the whole log frees _sum >= excess

    def admit(self, now: float, cost: float) -> Entry:
        """Record an admission at `now` (call only when `wait_s` said 0)."""
        self._expire(now)
        entry = Entry(now, cost)
        self._insert(entry)
        self._sum += cost
        return entry

    def redate(self, entry: Entry, time: float) -> None:
        """Date `entry` later, at `time` (never earlier: that could overfill a window)."""
        if not entry.live or time <= entry.time:
            return
        self._expire(time)  # what has left by then stays out, whatever is dated again
        if not entry.live:
            return
        log = self._log
        # A call is dated again soon after its admission: look from the newest end.
        for back, found in enumerate(reversed(log)):
            if found is entry:
                del log[len(log) - 1 - back]
                entry.time = time
                self._insert(entry)
                return

    def _insert(self, entry: Entry) -> None:
        """Put `entry` in its place in the log, which is in time order (usually: the end)."""
        log = self._log
        i = len(log)
        while i and log[i - 1].time > entry.time:
            i -= 1
        if i == len(log):
            log.append(entry)
        else:
            log.insert(i, entry)

    def settle(self, entry: Entry, cost: float) -> None:
        """Replace an admission's cost by the real one (a refund or a charge)."""
        if entry.live:
            self._sum += cost - entry.cost
        entry.cost = cost

    def cost_since(self, time: float) -> float:
        """The cost admitted strictly after `time` that is still in the window."""
        return math.fsum(e.cost for e in self._log if e.time > time)
