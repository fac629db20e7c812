"""The ideal times the scenarios are judged against: lower bounds, pure arithmetic.

Every figure is the least time the limits allow, so a contender's ``x ideal`` says how much of
the limits it left unused (or paid in retries). No imports beyond ``math``: the tests load this
file on its own (tests/test_bench_limits.py checks it against the mock API's own window).
"""

from __future__ import annotations

import math

__all__ = ["bucket_ideal_s", "concurrency_ideal_s", "uniform_ideal_s", "window_ideal_s"]

_EPS = 1e-9


def window_ideal_s(
    *,
    requests: int,
    tokens: float,
    request_share: float,
    token_share: float,
    window_s: float,
    latency_s: float,
) -> float:
    """Return the least time under a strict window, counting tokens as a fluid.

    Any window of `window_s` admits at most `request_share` requests and `token_share` tokens,
    so the work needs at least ``k = ceil(max(requests / request_share, tokens / token_share))``
    windows' worth of admissions. Packed perfectly (every window's share sent the moment it
    opens), the last request starts ``k - 1`` windows after the first and ends one latency
    later. With varied costs this is a lower bound, not always reachable: whole requests
    rarely fill a token share exactly.

    >>> window_ideal_s(requests=120, tokens=120 * 430, request_share=8, token_share=3333,
    ...                window_s=1.0, latency_s=2.5)
    17.5
    """
    windows = max(requests / request_share, tokens / token_share)
    return (math.ceil(windows - _EPS) - 1) * window_s + latency_s


def uniform_ideal_s(
    *,
    requests: int,
    cost: int,
    request_share: float,
    token_share: float,
    window_s: float,
    latency_s: float,
) -> float:
    """Return the least time under a strict window when every request costs the same.

    Then the bound is exact and tighter than `window_ideal_s`: a window holds at most ``p =
    min(floor(request_share), floor(token_share / cost))`` whole requests, so among the start
    times ``s_1 <= ... <= s_n`` every ``s_(1 + p*j)`` is at least ``j`` windows after ``s_1``.
    The last start is ``ceil(n / p) - 1`` windows after the first; then one latency. Sending
    ``p`` requests as each window opens reaches it.

    >>> uniform_ideal_s(requests=120, cost=430, request_share=8, token_share=3333,
    ...                 window_s=1.0, latency_s=2.5)  # 7 a window: 18 windows
    19.5
    """
    per_window = min(math.floor(request_share + _EPS), math.floor(token_share / cost + _EPS))
    if per_window < 1:
        msg = f"uniform_ideal_s(cost={cost}): above the token share {token_share:g}"
        raise ValueError(msg)
    return (math.ceil(requests / per_window - _EPS) - 1) * window_s + latency_s


def concurrency_ideal_s(*, requests: int, concurrency: int, latency_s: float) -> float:
    """Return the least time with no rate limit: rounds of `concurrency` calls, one latency each.

    >>> concurrency_ideal_s(requests=2_000, concurrency=50, latency_s=0.05)
    2.0
    """
    return math.ceil(requests / concurrency - _EPS) * latency_s


def bucket_ideal_s(*, requests: int, rate: float, burst: float, op_s: float) -> float:
    """Return the least time through a token bucket that starts full.

    `burst` calls go at once, the rest at `rate` a second; the last takes `op_s`.

    >>> bucket_ideal_s(requests=300, rate=40.0, burst=40.0, op_s=0.005)
    6.505
    """
    return max(0.0, requests - burst) / rate + op_s
