"""Paced admission: the Generic Cell Rate Algorithm ("virtual scheduling"), with costs.

Used when the enforcement window is not known. Each unit of cost books `interval_s =
period / limit` of a virtual timeline; the theoretical arrival time `tat` is where the timeline
is booked up to. A request may start when ``tat - tolerance_s <= now``, and books ``cost *
interval_s`` from ``max(tat, now)``. With no tolerance, admissions are spread evenly over the
period: never a burst at its start. `burst` units of tolerance allow that many units at once.

Reference: ITU-T I.371 (the GCRA's virtual scheduling form), as used by aiolimiter-style
limiters; here with weighted costs and refunds.
"""

from __future__ import annotations

__all__ = ["Gcra"]


class Gcra:
    """Paced admission at `limit` units per `period_s`, with `burst` units of tolerance."""

    __slots__ = ("interval_s", "tat", "tolerance_s")

    def __init__(self, *, limit: float, period_s: float, burst: float = 0.0) -> None:
        if not (limit > 0 and period_s > 0 and burst >= 0):
            msg = f"limit={limit}, period_s={period_s} must be > 0 and burst={burst} >= 0"
            raise ValueError(msg)
        self.interval_s = period_s / limit
        self.tolerance_s = burst * self.interval_s
        self.tat = float("-inf")

    def wait_s(self, now: float, cost: float) -> float:  # noqa: ARG002 - same protocol as SlidingWindow
        """Seconds from `now` until a request may start (0.0: now)."""
        return max(self.tat - self.tolerance_s - now, 0.0)

    def admit(self, now: float, cost: float) -> None:
        """Book `cost` units starting at `now` (call only when `wait_s` said 0)."""
        self.tat = max(self.tat, now) + cost * self.interval_s

    def settle(self, delta: float) -> None:
        """Book (or give back) `delta` more units: the real cost minus the estimate."""
        self.tat += delta * self.interval_s
