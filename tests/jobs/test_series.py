"""`rate_points`: counts per second to at most N points, never above the busiest second."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conveyor.jobs.series import rate_points


def test_gaps_are_zeros_and_a_running_job_runs_to_now():
    """Seconds with no item are zeros; `until_s` extends the series to now."""
    points = rate_points([(100, 2), (103, 1)], until_s=105)
    assert points.start_s == 100
    assert points.per_s == (2.0, 0.0, 0.0, 1.0, 0.0, 0.0)


def test_a_long_series_is_the_mean_over_buckets():
    """Beyond max_points, each point is the mean over bucket_s seconds."""
    points = rate_points([(s, 10) for s in range(1000)], max_points=100)
    assert points.bucket_s == 10
    assert points.per_s == (10.0,) * 100


def test_no_points_and_a_bad_max():
    """No counts: no points; max_points below 1 is refused with the fix."""
    assert rate_points([]).per_s == ()
    with pytest.raises(ValueError, match="at least 1"):
        rate_points([(1, 1)], max_points=0)


@given(
    st.dictionaries(st.integers(0, 5000), st.integers(0, 50), max_size=200),
    st.integers(1, 700),
)
def test_no_point_is_above_the_busiest_second_and_none_is_lost(counts, max_points):
    """Downsampling keeps the total and never draws a rate no second reached."""
    points = rate_points(list(counts.items()), max_points=max_points)
    assert len(points.per_s) <= max_points
    assert sum(points.per_s) * points.bucket_s == pytest.approx(sum(counts.values()))
    assert max(points.per_s, default=0) <= max(counts.values(), default=0)
