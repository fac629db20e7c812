"""One limiter's constraints: a rate in exact or paced mode, and what the server said is left.

The arithmetic is in `conveyor.policy` (`window`, `gcra`); this module combines it per rate and
holds the safety margins, which are documented in docs/explanations/limits.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..policy.gcra import Gcra
from ..policy.window import Entry, SlidingWindow

if TYPE_CHECKING:
    from ..policy.rates import Rate

__all__ = ["BURST_SPREAD", "PACED_MARGIN", "WINDOW_MARGIN", "Constraint", "ServerCap"]

#: Paced mode books each unit this much longer than limit/period: a 2% margin keeps any
#: window of one period under the limit (GCRA admits up to one extra unit at the edges).
PACED_MARGIN = 0.02
#: Exact mode spreads each window's share over this fraction of the window (see _Constraint).
BURST_SPREAD = 0.05
#: Exact mode widens the enforcement window by this fraction, to absorb the difference between
#: our clock and the server's (scheduling and network jitter): 10 ms on a 1-second window.
WINDOW_MARGIN = 0.01


class Constraint:
    """One rate, in one mode, for one unit.

    Exact mode pairs the sliding window (the guarantee) with a fast pacer that spreads each
    window's share over `BURST_SPREAD` of the window instead of sending it all in the same
    instant. A share sent at once reaches the server as a queue, stamped over tens of
    milliseconds; the next window's share, sent exactly one window later, would then meet the
    tail of the last one. Spread out, request *i* of each window leaves one window after
    request *i* of the previous one, so the margin only has to cover network jitter, and the
    run still ends as early as the limits allow (the spread costs `BURST_SPREAD` of one
    window, once).
    """

    __slots__ = ("pacer", "rate", "unit", "window")

    def __init__(self, rate: Rate, window_s: float | None, burst: float) -> None:
        self.rate = rate
        self.unit = rate.unit
        self.window: SlidingWindow | None = None
        if window_s is not None:
            share = rate.share(window_s)
            effective = window_s * (1.0 + WINDOW_MARGIN)
            self.window = SlidingWindow(share=share, window_s=effective)
            self.pacer = Gcra(limit=share, period_s=window_s * BURST_SPREAD)
        else:
            limit = rate.limit * (1.0 - PACED_MARGIN)
            self.pacer = Gcra(limit=limit, period_s=rate.period_s, burst=burst)

    def largest_cost(self) -> float:
        """The largest cost one call may have (a window's share, or the limit)."""
        return self.window.share if self.window is not None else self.rate.limit

    def wait_s(self, now: float, units: float) -> float:
        """Seconds until `units` may be admitted."""
        wait = self.pacer.wait_s(now, units)
        if self.window is not None:
            wait = max(wait, self.window.wait_s(now, units))
        return wait

    def admit(self, now: float, units: float) -> Entry | None:
        """Book `units` at `now`; the window's entry, for settling later."""
        self.pacer.admit(now, units)
        return self.window.admit(now, units) if self.window is not None else None

    def settle(self, entry: Entry | None, cost: float, delta: float) -> None:
        """Replace an admission's cost by the real one (`delta` = real - estimate)."""
        if self.window is not None and entry is not None:
            self.window.settle(entry, cost)
        self.pacer.settle(delta)


_EPS = 1e-9
_PAD_S = 1e-9

#: Header families whose budgets refill continuously (a token bucket): "reset" is when the
#: budget is full again, and it fills at an even pace until then. The others (IETF, GitHub's
#: X-RateLimit) describe fixed windows: everything comes back at the reset, nothing before.
REFILLING_SOURCES = frozenset({"openai", "anthropic"})


class ServerCap:
    """What the server said is left of a budget, and how it comes back.

    `remaining` was left at time `since` (less what was admitted here since); the budget then
    refills at `refill_per_s` (a token bucket) until it is full at `until`, or, with
    `refill_per_s` 0 (a fixed window), comes back whole at `until`. Reading a bucket's
    "remaining N, full in T" as "N more until T" would leave the budget unused while it
    refills: against a limit enforced over a sliding window, that halved the throughput.
    """

    __slots__ = ("refill_per_s", "remaining", "since", "unit", "until")

    def __init__(
        self,
        unit: str,
        remaining: float,
        until: float,
        *,
        since: float | None = None,
        refill_per_s: float = 0.0,
    ) -> None:
        self.unit = unit
        self.remaining = remaining
        self.until = until
        self.since = until if since is None else since
        self.refill_per_s = refill_per_s

    def available(self, now: float) -> float:
        """What may be admitted at `now` (before `until`)."""
        return self.remaining + self.refill_per_s * max(now - self.since, 0.0)

    def wait_s(self, now: float, units: float) -> float:
        """Seconds from `now` until `units` fit; 0.0 if they fit now."""
        short = units - self.available(now)
        if short <= _EPS or now >= self.until:
            return 0.0
        if self.refill_per_s > 0:
            # A hair past the exact moment, so that float rounding cannot leave it short.
            return min(short / self.refill_per_s + _PAD_S, self.until - now)
        return self.until - now
