"""The ideal duration: the least time the limits and the latency allow, in plain numbers."""

import pytest

from conveyor.policy.ideal import ideal_duration_s


def test_concurrency_alone_bounds_by_rounds_of_latency():
    """With no rate, N calls at concurrency C take ceil(N / C) latencies."""
    assert ideal_duration_s(requests=5_000, concurrency=100, latency_s=0.05) == 2.5
    assert ideal_duration_s(requests=101, concurrency=100, latency_s=0.05) == 0.1


def test_a_windowed_rate_counts_windows_from_zero_plus_one_latency():
    """600 requests at 60 a window: 10 windows, the last opening at 9 s, answered at 9.05 s."""
    ideal = ideal_duration_s(
        requests=600,
        concurrency=50,
        latency_s=0.05,
        requests_per_minute=3_600,
        window_s=1.0,
    )
    assert ideal == pytest.approx(9.05)


def test_the_tighter_of_requests_and_tokens_binds():
    """Tokens bind when their windows outnumber the requests' windows."""
    ideal = ideal_duration_s(
        requests=100,
        tokens=50_000,
        concurrency=50,
        latency_s=0.1,
        requests_per_minute=6_000,
        tokens_per_minute=600_000,
        window_s=1.0,
    )
    assert ideal == pytest.approx(4.1)  # 5 token windows (10,000 each) vs 1 request window


def test_an_even_pace_takes_n_over_the_rate_plus_one_latency():
    """Without a window, pacing at the rate: N / rate seconds, plus the last answer."""
    ideal = ideal_duration_s(
        requests=600, concurrency=50, latency_s=0.05, requests_per_minute=3_600
    )
    assert ideal == pytest.approx(10.05)


def test_nothing_to_send_takes_no_time():
    """Zero requests: zero seconds."""
    assert ideal_duration_s(requests=0, concurrency=1, latency_s=1.0) == 0.0
