"""Latency statistics in bounded memory, cheap enough to record every attempt.

The hot path only appends to `pending` (a list); `fold()` runs now and then (the engine calls it
when the consumer drains) and does the arithmetic at C speed on the whole batch.

Up to `EXACT_SAMPLES` latencies are kept as they are, so percentiles of small runs are exact
(nearest-rank). Past that, samples fold into a log-bucketed histogram (buckets 1% wide, in the
manner of HdrHistogram), so a run of a billion items costs a few kilobytes and every reported
percentile is within 1% of the true one. Count, mean and max stay exact throughout.
"""

from __future__ import annotations

import math
from bisect import bisect_left

__all__ = ["EXACT_SAMPLES", "FOLD_AT", "LatencyStats"]

EXACT_SAMPLES = 10_000
#: The engine folds `pending` once it holds this many samples.
FOLD_AT = 4096
_GROWTH = 1.01  # each bucket is 1% wider than the last
_SCALE = 1.0 / math.log(_GROWTH)
_FLOOR_S = 1e-7  # everything at or below 100 ns shares the first bucket
_OFFSET = -math.floor(math.log(_FLOOR_S) * _SCALE)
_BUCKETS = _OFFSET + math.ceil(math.log(1e6) * _SCALE) + 1  # up to ~11.6 days


def _bucket_of(latency_s: float) -> int:
    if latency_s <= _FLOOR_S:
        return 0
    return min(math.floor(math.log(latency_s) * _SCALE) + _OFFSET, _BUCKETS - 1)


def _upper_bound_s(bucket: int) -> float:
    return math.exp((bucket + 1 - _OFFSET) / _SCALE)


class LatencyStats:
    """Collects latencies (seconds) and answers count, mean, max and percentiles.

    Record with ``stats.pending.append(latency_s)`` (or `add`); every answer folds first.
    """

    __slots__ = ("_buckets", "_count", "_max_s", "_samples", "_total_s", "pending")

    pending: list[float]

    def __init__(self) -> None:
        self.pending: list[float] = []
        self._count = 0
        self._total_s = 0.0
        self._max_s = 0.0
        self._samples: list[float] | None = []
        self._buckets: list[int] | None = None

    def add(self, latency_s: float) -> None:
        """Record one latency."""
        self.pending.append(latency_s)
        if len(self.pending) >= FOLD_AT:
            self.fold()

    def fold(self) -> None:
        """Move the pending samples into the totals (and the histogram, past `EXACT_SAMPLES`)."""
        if not self.pending:
            return
        # Emptied in place: the engine holds `pending.append` bound to this very list.
        batch = self.pending[:]
        self.pending.clear()
        self._count += len(batch)
        self._total_s += math.fsum(batch)
        self._max_s = max(self._max_s, *batch)
        if self._samples is not None:
            self._samples.extend(batch)
            if len(self._samples) < EXACT_SAMPLES:
                return
            batch, self._samples = self._samples, None
            self._buckets = [0] * _BUCKETS
        assert self._buckets is not None
        # Sorted, the batch falls into runs that share a bucket; bisect finds each run's end,
        # so the Python work is per bucket touched, not per sample.
        batch.sort()
        buckets = self._buckets
        start, n = 0, len(batch)
        while start < n:
            bucket = _bucket_of(batch[start])
            end = n if bucket == _BUCKETS - 1 else bisect_left(batch, _upper_bound_s(bucket), start)
            end = max(end, start + 1)  # float edge: always make progress
            buckets[bucket] += end - start
            start = end

    @property
    def count(self) -> int:
        """How many latencies were recorded."""
        self.fold()
        return self._count

    @property
    def max_s(self) -> float:
        """The exact largest latency, 0.0 when empty."""
        self.fold()
        return self._max_s

    @property
    def mean_s(self) -> float:
        """The exact mean, 0.0 when empty."""
        self.fold()
        return self._total_s / self._count if self._count else 0.0

    def percentile_s(self, p: float) -> float:
        """Return the p-th percentile (nearest rank), 0.0 when empty."""
        if not 0 < p <= 100:
            msg = f"percentile p={p} must be in (0, 100]"
            raise ValueError(msg)
        self.fold()
        if not self._count:
            return 0.0
        rank = max(1, math.ceil(p / 100.0 * self._count))
        if self._samples is not None:
            return sorted(self._samples)[rank - 1]
        assert self._buckets is not None
        seen = 0
        for index, n in enumerate(self._buckets):
            seen += n
            if seen >= rank:
                if index == 0:
                    return min(_FLOOR_S, self._max_s)
                # The geometric middle of the bucket: within 0.5% of any value in it.
                low = math.exp((index - _OFFSET) / _SCALE)
                return min(low * math.sqrt(_GROWTH), self._max_s)
        return self._max_s  # pragma: no cover - unreachable: ranks never pass the count
