"""The rate-limit headers, formatted as OpenAI sends them (pure)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .window import Admission

__all__ = ["format_duration", "rate_limit_headers", "retry_after_headers"]


def format_duration(seconds: float) -> str:
    """Format a duration as OpenAI's ``x-ratelimit-reset-*`` headers do (Go's style).

    Rounded up to the millisecond, so that waiting the answer is never too early; a float's
    last-digit noise is not a millisecond (``(t + 60.0) - t`` can exceed 60 by 1e-13).

    >>> [format_duration(s) for s in (0, 0.02, 1, 1.5, 360, 3725.25, 60.000000000000114)]
    ['0s', '20ms', '1s', '1.5s', '6m0s', '1h2m5.25s', '1m0s']
    """
    ms = math.ceil(seconds * 1000.0 - 1e-6)
    if ms <= 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, rest_ms = divmod(ms, 3_600_000)
    minutes, rest_ms = divmod(rest_ms, 60_000)
    whole_s, frac_ms = divmod(rest_ms, 1000)
    text = f"{whole_s}.{frac_ms:03d}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{hours}h{minutes}m{text}"
    if minutes:
        return f"{minutes}m{text}"
    return text


def rate_limit_headers(
    admission: Admission, *, max_requests: int | None, max_tokens: int | None
) -> dict[str, str]:
    """Return the ``x-ratelimit-*`` headers for an admission (none for a dimension with no limit).

    ``limit`` is the share of one window (equal to the per-minute limit with the default
    60-second window), ``remaining`` what the window would still admit, and ``reset`` the time
    until the window is full again.
    """
    headers: dict[str, str] = {}
    if max_requests is None and max_tokens is None:
        return headers
    reset = format_duration(admission.reset_s)
    for unit, limit, remaining in (
        ("requests", max_requests, admission.remaining_requests),
        ("tokens", max_tokens, admission.remaining_tokens),
    ):
        if limit is None or remaining is None:
            continue
        headers[f"x-ratelimit-limit-{unit}"] = str(limit)
        headers[f"x-ratelimit-remaining-{unit}"] = str(remaining)
        headers[f"x-ratelimit-reset-{unit}"] = reset
    return headers


def retry_after_headers(retry_after_s: float) -> dict[str, str]:
    """Return ``Retry-After`` (whole seconds, rounded up) and ``retry-after-ms`` (rounded up).

    >>> retry_after_headers(1.2)
    {'retry-after': '2', 'retry-after-ms': '1200'}
    """
    ms = math.ceil(retry_after_s * 1000.0)
    return {"retry-after": str(math.ceil(ms / 1000)), "retry-after-ms": str(ms)}
