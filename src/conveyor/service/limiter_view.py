"""The shared limiters as the dashboard shows them: now, and over the last minutes.

`limiter_now` reads what the metrics read (`conveyor.metrics.collectors`): calls admitted, in
flight and waiting, the limits enforced, the 429s and overloads the API answered, and what
its headers last said is left. `LimiterSeries` keeps, per limiter, the count admitted at most
once a second when read, so the rate between two samples is the calls admitted between them
(taken where they are admitted, not from when a browser heard of them): never above what the
limiter let through over that span.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from .. import _clock

if TYPE_CHECKING:
    from ..limits.limiter import Limiter

__all__ = ["MAX_SAMPLES", "LimiterSeries", "limiter_now"]

#: Samples kept per limiter (one a second at most: 10 minutes when read every second).
MAX_SAMPLES = 600


def limiter_now(lim: Limiter) -> dict[str, Any]:
    """One limiter's figures now (this process's part, for a limiter kept in Redis)."""
    learning = lim.learning
    return {
        "name": lim.name,
        "admitted": lim.admitted,
        "in_flight": lim.in_flight,
        "waiting": lim.waiting,
        "concurrency_limit": lim.concurrency_limit,
        "limits": [
            {
                "unit": rate.unit,
                "limit": rate.limit,
                "period_s": rate.period_s,
                "per_second": rate.limit / rate.period_s,
            }
            for rate in lim.rates
        ],
        "utilisation": dict(sorted(lim.utilisation().items())),
        "pushbacks": dict(sorted(learning.pushbacks_by_kind.items())),
        "stated_remaining": dict(sorted(learning.stated_remaining.items())),
        "adopted": {dim: {"ours": a, "theirs": b} for dim, (a, b) in learning.adopted.items()},
        "halted": None if lim.halted is None else str(lim.halted),
        "paused": lim.paused_until > _clock.now(),
    }


class LimiterSeries:
    """The admitted count of each limiter, sampled at most once a second (when read)."""

    def __init__(self, *, min_gap_s: float = 1.0) -> None:
        self._min_gap_s = min_gap_s
        self._samples: dict[str, deque[tuple[float, int, int]]] = {}

    def sample(self, lim: Limiter, wall_s: float) -> list[list[float]]:
        """Sample `lim` at `wall_s` (Unix seconds); its points ``[t0, t1, admitted/s, pushbacks]``.

        Each point is the span between two samples: its start and end, the mean rate admitted
        over it, and the pushbacks answered in it.
        """
        samples = self._samples.setdefault(lim.name, deque(maxlen=MAX_SAMPLES))
        now = (wall_s, lim.admitted, lim.learning.pushbacks)
        if not samples or wall_s - samples[-1][0] >= self._min_gap_s:
            samples.append(now)
        return [
            [t0, t1, (a1 - a0) / (t1 - t0), float(p1 - p0)]
            for (t0, a0, p0), (t1, a1, p1) in zip(samples, list(samples)[1:], strict=False)
        ]
