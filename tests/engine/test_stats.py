"""Latency statistics: exact when small, within 1% when large, bounded memory throughout."""

import math
import random
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor.engine.stats import EXACT_SAMPLES, LatencyStats


def _nearest_rank(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1]


def test_empty_stats_are_zero():
    """No samples: every figure is 0.0, not an error."""
    stats = LatencyStats()
    assert (stats.count, stats.mean_s, stats.max_s, stats.percentile_s(99)) == (0, 0.0, 0.0, 0.0)


def test_small_runs_are_exact():
    """Under EXACT_SAMPLES, percentiles are the exact nearest-rank values."""
    stats = LatencyStats()
    for ms in range(1, 101):
        stats.add(ms / 1000)
    assert stats.percentile_s(50) == 0.050
    assert stats.percentile_s(95) == 0.095
    assert stats.percentile_s(100) == 0.100
    assert stats.mean_s == pytest.approx(0.0505)


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    p=st.sampled_from([50.0, 90.0, 95.0, 99.0, 99.9]),
)
def test_large_runs_are_within_one_percent(seed, p):
    """Past EXACT_SAMPLES, each percentile is within 1% of the true one; max and mean exact."""
    rng = random.Random(seed)
    values = [rng.lognormvariate(-3, 1.0) for _ in range(EXACT_SAMPLES * 3)]
    stats = LatencyStats()
    for v in values:
        stats.add(v)
    assert stats.percentile_s(p) == pytest.approx(_nearest_rank(values, p), rel=0.01)
    assert stats.max_s == max(values)
    assert stats.mean_s == pytest.approx(sum(values) / len(values), rel=1e-9)


def test_memory_stays_bounded():
    """A million samples fold into a fixed histogram: no list grows with the count."""
    stats = LatencyStats()
    for i in range(1_000_000):
        stats.pending.append((i % 997) * 1e-5)
        if len(stats.pending) >= 4096:
            stats.fold()
    assert stats.count == 1_000_000
    assert stats._samples is None
    assert stats._buckets is not None
    assert sys.getsizeof(stats._buckets) < 64_000


def test_zero_latencies_share_the_first_bucket():
    """Virtual time gives zero latencies; they are counted, not lost or crashing log()."""
    stats = LatencyStats()
    for _ in range(EXACT_SAMPLES + 10):
        stats.add(0.0)
    assert stats.count == EXACT_SAMPLES + 10
    assert stats.percentile_s(99) == 0.0


def test_bad_percentile_is_refused():
    """p must be in (0, 100]."""
    with pytest.raises(ValueError, match="percentile"):
        LatencyStats().percentile_s(0)
