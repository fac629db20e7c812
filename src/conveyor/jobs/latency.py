"""Latency percentiles of a job from a small histogram kept on its row. Pure: no I/O.

A job may have millions of items; its p50/p95/p99 must still be one row read away. Each
settled item's latency lands in a log-scale bucket: bucket ``b`` holds latencies in
``(FLOOR_S * GROWTH**(b-1), FLOOR_S * GROWTH**b]``, and a percentile is reported as its
bucket's upper bound, so it is never below the true value and at most 10% above it (the
scheme of HdrHistogram and DDSketch, with a fixed relative error). Buckets 0..`TOP` cover
0.1 ms to about 5 hours; anything outside is clamped to the ends.

The histogram is a sorted tuple of ``(bucket, count)`` pairs, stored as a JSON object.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "FLOOR_S",
    "GROWTH",
    "Histogram",
    "bucket",
    "dumps",
    "loads",
    "merge",
    "percentile",
    "upper_s",
]

FLOOR_S = 1e-4
GROWTH = 1.1
TOP = 200
_LOG_GROWTH = math.log(GROWTH)

Histogram = tuple[tuple[int, int], ...]


def bucket(latency_s: float) -> int:
    """The bucket of one latency.

    >>> bucket(0.0), bucket(1e-4), bucket(0.011), bucket(1e9)
    (0, 0, 50, 200)
    """
    if not latency_s > FLOOR_S:  # also catches NaN
        return 0
    # The epsilon keeps an exact bucket bound in its own bucket despite rounding.
    return min(TOP, math.ceil(math.log(latency_s / FLOOR_S) / _LOG_GROWTH - 1e-9))


def upper_s(b: int) -> float:
    """The largest latency in bucket `b`, in seconds."""
    return FLOOR_S * GROWTH**b


def merge(hist: Histogram, latencies: Iterable[float], *, sign: int = 1) -> Histogram:
    """`hist` with `latencies` added (``sign=-1``: taken away; empty buckets are dropped)."""
    counts = Counter(dict(hist))
    for latency in latencies:
        counts[bucket(latency)] += sign
    return tuple(sorted((b, n) for b, n in counts.items() if n > 0))


def percentile(hist: Histogram, q: float) -> float:
    """The `q`-quantile (0 < q <= 1) in seconds, as its bucket's upper bound; 0 when empty.

    >>> round(percentile(((10, 1), (20, 99)), 0.5), 6)
    0.000673
    """
    total = sum(n for _, n in hist)
    if total == 0:
        return 0.0
    rank = max(1, math.ceil(q * total))
    seen = 0
    for b, n in hist:
        seen += n
        if seen >= rank:
            return upper_s(b)
    return upper_s(hist[-1][0])  # pragma: no cover - rank <= total


def dumps(hist: Histogram) -> str:
    """The histogram as stored: a JSON object of bucket to count."""
    return json.dumps({str(b): n for b, n in hist}, separators=(",", ":"))


def loads(text: str | None) -> Histogram:
    """Read a histogram stored by `dumps` (``None`` or empty: no latencies yet)."""
    if not text:
        return ()
    return tuple(sorted((int(b), int(n)) for b, n in json.loads(text).items()))
