"""The physical limit: the least time a batch of calls can take under its limits. Pure.

Three things bound a run, and the slowest of them sets its ideal duration:

- **Concurrency.** `concurrency` calls in flight, each taking `latency_s`: ``ceil(n /
  concurrency)`` rounds of one latency.
- **A rate over a known window** (`window_s`): each window admits its share, ``limit *
  window_s / period``. The calls need ``ceil(max(n / request_share, tokens / token_share))``
  windows; the first opens at 0, and the last call still takes one latency to answer.
- **A rate with no window** (even pacing): ``n / rate`` seconds of pacing, plus one latency.

Retried calls count: a limit bounds every call the API sees, so `requests` and `tokens` are
what was sent, retries included. Benchmarks and the demo compare a run with this figure.
"""

from __future__ import annotations

import math

__all__ = ["ideal_duration_s"]

_EPS = 1e-9


def ideal_duration_s(
    *,
    requests: int,
    tokens: float = 0.0,
    concurrency: int,
    latency_s: float,
    requests_per_minute: float | None = None,
    tokens_per_minute: float | None = None,
    window_s: float | None = None,
) -> float:
    """Return the least time `requests` calls (costing `tokens` in all) can take.

    >>> ideal_duration_s(requests=5_000, concurrency=100, latency_s=0.05)
    2.5
    >>> ideal_duration_s(requests=600, concurrency=50, latency_s=0.05,
    ...                  requests_per_minute=3_600, window_s=1.0)
    9.05
    >>> ideal_duration_s(requests=600, concurrency=50, latency_s=0.05, requests_per_minute=3_600)
    10.05
    """
    if requests <= 0:
        return 0.0
    bound = math.ceil(requests / concurrency - _EPS) * latency_s
    limits = [(requests, requests_per_minute), (tokens, tokens_per_minute)]
    if window_s is not None:
        windows = 0.0
        for amount, per_minute in limits:
            if per_minute:
                windows = max(windows, amount / (per_minute * window_s / 60.0))
        if windows:
            bound = max(bound, (math.ceil(windows - _EPS) - 1) * window_s + latency_s)
    else:
        for amount, per_minute in limits:
            if per_minute:
                bound = max(bound, amount / (per_minute / 60.0) + latency_s)
    return bound
