"""How late calls reach the API after the limiter let them in: learned, purely.

A token bucket counts a call let in from a full bucket as of when the API sees it: the API's
own bucket stays full until then and wastes that refill. The limiter assumes a small delay
(`conveyor.limits.constraints.BUCKET_LATE_S`); a client that builds its requests slowly (an
SDK, a busy event loop) sends the last of a burst tens of milliseconds after it was let in, and
a bucket that is nearly full while another limit binds then wastes refill the limiter counted
on: the API refuses a call now and then (measured on bench/llm.py's Claude route: 15-26 429s
for ``limit_anthropic`` over 720 requests, 0 with the delay measured). So each call's delay,
from its admission to when its request went out (`conveyor.limits.slot.Slot.mark_sent`), is
remembered, and buckets count calls that late: a high quantile of the delays seen lately.
"""

from __future__ import annotations

import bisect
from collections import deque

__all__ = ["KEPT", "QUANTILE", "SendLateness"]

#: How many recent delays are remembered.
KEPT = 256
#: The quantile of recent delays allowed for (0.99: one call in a hundred later than that).
QUANTILE = 0.99


class SendLateness:
    """A high quantile of the recent delays between letting a call in and sending it.

    >>> lateness = SendLateness()
    >>> lateness.allowance_s(floor_s=0.02)
    0.02
    >>> for delay in [0.001] * 98 + [0.05, 0.08]:
    ...     lateness.observe(delay)
    >>> lateness.allowance_s(floor_s=0.02)
    0.08
    """

    __slots__ = ("_recent", "_sorted")

    def __init__(self) -> None:
        self._recent: deque[float] = deque()
        self._sorted: list[float] = []

    def observe(self, delay_s: float) -> None:
        """Remember one call's delay (a negative one counts as none)."""
        delay_s = max(delay_s, 0.0)
        if len(self._recent) == KEPT:
            old = self._recent.popleft()
            del self._sorted[bisect.bisect_left(self._sorted, old)]
        self._recent.append(delay_s)
        bisect.insort(self._sorted, delay_s)

    def allowance_s(self, *, floor_s: float) -> float:
        """The delay to allow for: `QUANTILE` of the recent ones, at least `floor_s`."""
        ranked = self._sorted
        if not ranked:
            return floor_s
        return max(floor_s, ranked[min(int(QUANTILE * len(ranked)), len(ranked) - 1)])
