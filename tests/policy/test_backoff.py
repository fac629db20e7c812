"""Full-jitter backoff, as pure arithmetic."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conveyor.policy.backoff import backoff_ceiling_s, full_jitter_s

retries = st.integers(min_value=1, max_value=10_000)
bases = st.floats(min_value=1e-3, max_value=10.0)
caps = st.floats(min_value=10.0, max_value=3600.0)
samples = st.floats(min_value=0.0, max_value=1.0, exclude_max=True)


def test_ceiling_doubles_then_caps():
    """The ceiling doubles each retry from the base and stops at the cap."""
    ceilings = [backoff_ceiling_s(n, base_s=0.25, cap_s=3.0) for n in range(1, 7)]
    assert ceilings == [0.25, 0.5, 1.0, 2.0, 3.0, 3.0]


@given(retries, bases, caps, samples)
def test_jitter_stays_under_the_ceiling(retry, base, cap, u):
    """Every delay lies in [0, ceiling] and never passes the cap, even after many retries."""
    delay = full_jitter_s(retry, base_s=base, cap_s=cap, u=u)
    assert 0.0 <= delay <= backoff_ceiling_s(retry, base_s=base, cap_s=cap) <= cap


@given(retries, bases, caps)
def test_ceiling_never_shrinks(retry, base, cap):
    """Waiting longer is never followed by waiting less."""
    assert backoff_ceiling_s(retry, base_s=base, cap_s=cap) <= backoff_ceiling_s(
        retry + 1, base_s=base, cap_s=cap
    )


def test_jitter_is_the_sample_times_the_ceiling():
    """The sample picks the point under the ceiling linearly (uniform in, uniform out)."""
    assert full_jitter_s(2, base_s=1.0, cap_s=60.0, u=0.25) == 0.5


def test_retry_zero_is_refused():
    """Retries count from 1; 0 is a caller bug, said so."""
    with pytest.raises(ValueError, match="retry must be >= 1"):
        backoff_ceiling_s(0, base_s=1.0, cap_s=2.0)
