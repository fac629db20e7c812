"""Exponential backoff with full jitter.

"Full jitter" draws the delay uniformly from ``[0, min(cap, base * 2 ** (retry - 1))]``: of the
jitter schemes compared in AWS's "Exponential Backoff and Jitter" (Brooker, 2015) it spreads
retrying clients the most and finishes the work soonest, because clients that failed together
do not retry together.
"""

from __future__ import annotations

__all__ = ["backoff_ceiling_s", "full_jitter_s"]


def backoff_ceiling_s(retry: int, *, base_s: float, cap_s: float) -> float:
    """Return the largest delay before the `retry`-th retry (1 for the first retry).

    >>> [backoff_ceiling_s(n, base_s=0.5, cap_s=3.0) for n in (1, 2, 3, 4)]
    [0.5, 1.0, 2.0, 3.0]
    """
    if retry < 1:
        msg = f"retry must be >= 1, got {retry}"
        raise ValueError(msg)
    # Stop doubling once past the cap: 2 ** 2000 would overflow a float.
    if retry > 64:
        return cap_s
    return min(cap_s, base_s * 2.0 ** (retry - 1))


def full_jitter_s(retry: int, *, base_s: float, cap_s: float, u: float) -> float:
    """Return the delay before the `retry`-th retry for a uniform sample `u` in ``[0, 1)``.

    >>> full_jitter_s(3, base_s=1.0, cap_s=60.0, u=0.5)
    2.0
    """
    return backoff_ceiling_s(retry, base_s=base_s, cap_s=cap_s) * u
