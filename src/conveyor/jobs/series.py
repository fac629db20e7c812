"""A job's throughput over time, from the items settled in each second. Pure: no I/O.

The worker stamps each item with the second it ended in (its clock, not the time the result
is written: results are written in batches, and a rate taken from writes or from progress
events shows spikes no call ever made). The store keeps a count per second (``job_rates``);
`rate_points` turns those counts into at most `MAX_POINTS` points: one a second while the
job is short, then one per ``bucket_s`` seconds, the mean rate over the bucket. A mean never
exceeds the busiest second in it, so a chart of these points crosses a limit only if some
second did.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["MAX_POINTS", "RatePoints", "rate_points"]

#: Points a series has at most: a chart 600 px wide or so draws one a pixel or two.
MAX_POINTS = 600


@dataclass(frozen=True, kw_only=True, slots=True)
class RatePoints:
    """Items settled per second, one point per `bucket_s` seconds.

    Attributes:
        start_s: the Unix second the first point starts at (0 with no points).
        bucket_s: the seconds each point covers (1, or more for a long job).
        per_s: the mean items settled per second in each bucket, oldest first.
    """

    start_s: int
    bucket_s: int
    per_s: tuple[float, ...]


def rate_points(
    counts: Sequence[tuple[int, int]], *, until_s: int | None = None, max_points: int = MAX_POINTS
) -> RatePoints:
    """The series of `counts` (``(second, items)``, any order), gaps filled with zeros.

    `until_s`: the last second to show (now, for a job still running), so a job that stalls
    shows its rate falling to zero rather than a line held at its last value.

    >>> rate_points([(10, 3), (12, 5)])
    RatePoints(start_s=10, bucket_s=1, per_s=(3.0, 0.0, 5.0))
    >>> rate_points([(0, 4), (1, 2), (2, 6), (3, 0)], max_points=2)
    RatePoints(start_s=0, bucket_s=2, per_s=(3.0, 3.0))
    """
    if max_points < 1:
        raise ValueError(f"max_points={max_points!r}: pass at least 1")
    if not counts:
        return RatePoints(start_s=0, bucket_s=1, per_s=())
    first = min(s for s, _ in counts)
    last = max(s for s, _ in counts)
    if until_s is not None:
        last = max(last, until_s)
    span = last - first + 1
    bucket_s = max(1, math.ceil(span / max_points))
    sums = [0] * math.ceil(span / bucket_s)
    for second, n in counts:
        if first <= second <= last:
            sums[(second - first) // bucket_s] += n
    return RatePoints(start_s=first, bucket_s=bucket_s, per_s=tuple(n / bucket_s for n in sums))
