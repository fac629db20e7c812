"""The rate-limit headers, formatted as OpenAI and Anthropic send them (pure).

Both APIs state per-minute figures, whatever period they enforce over: OpenAI's
``x-ratelimit-limit-requests: 500`` with the remaining per-minute budget, Anthropic's
``anthropic-ratelimit-requests-limit: 50`` with what its bucket holds scaled to the minute.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .bucket import BucketState
    from .window import Admission

__all__ = [
    "anthropic_rate_limit_headers",
    "format_duration",
    "format_rfc3339",
    "rate_limit_headers",
    "retry_after_headers",
]


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
    admission: Admission, *, rpm: float | None, tpm: float | None, window_s: float
) -> dict[str, str]:
    """Return the ``x-ratelimit-*`` headers for an admission (none for a dimension with no limit).

    As OpenAI reports them: ``limit`` is the per-minute limit (a whole number, rounded down),
    ``remaining`` what the window still admits scaled to the minute
    (``remaining_in_window * 60 / window_s``, rounded down), and ``reset`` the time until the
    window is full again.

    >>> from conveyor.mockapi.window import Admission
    >>> state = Admission(True, 0.0, remaining_requests=7, remaining_tokens=None, reset_s=0.5)
    >>> rate_limit_headers(state, rpm=500, tpm=None, window_s=1.0)
    {'x-ratelimit-limit-requests': '500', 'x-ratelimit-remaining-requests': '420', \
'x-ratelimit-reset-requests': '500ms'}
    """
    headers: dict[str, str] = {}
    if rpm is None and tpm is None:
        return headers
    reset = format_duration(admission.reset_s)
    for unit, limit, remaining in (
        ("requests", rpm, admission.remaining_requests),
        ("tokens", tpm, admission.remaining_tokens),
    ):
        if limit is None or remaining is None:
            continue
        headers[f"x-ratelimit-limit-{unit}"] = str(_whole(limit))
        headers[f"x-ratelimit-remaining-{unit}"] = str(_whole(remaining * 60.0 / window_s))
        headers[f"x-ratelimit-reset-{unit}"] = reset
    return headers


def _whole(value: float) -> int:
    """Round down, past a float's last-digit noise (``7 * 60 / 0.1`` is not 4199.99...)."""
    return math.floor(value + 1e-9)


def format_rfc3339(unix_s: float) -> str:
    """Format a Unix time as an RFC 3339 UTC time, rounded up to the millisecond.

    Anthropic sends whole seconds; the mock keeps the milliseconds, which matter when a bucket
    fills again within a second.

    >>> format_rfc3339(1_700_000_000.0), format_rfc3339(1_700_000_000.0001)
    ('2023-11-14T22:13:20Z', '2023-11-14T22:13:20.001Z')
    """
    ms = math.ceil(unix_s * 1000.0 - 1e-6)
    whole_s, frac_ms = divmod(ms, 1000)
    stamp = datetime.fromtimestamp(whole_s, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{frac_ms:03d}Z" if frac_ms else f"{stamp}Z"


def _nearest_thousand(tokens: float) -> int:
    return math.floor(tokens / 1000.0 + 0.5) * 1000


def anthropic_rate_limit_headers(
    states: Mapping[str, BucketState], *, wall_now_s: float
) -> dict[str, str]:
    """Return the ``anthropic-ratelimit-*`` headers for the buckets there are.

    For each of ``requests``, ``input-tokens`` and ``output-tokens``: ``limit`` the per-minute
    limit, ``remaining`` what the bucket holds scaled to the minute (requests rounded down,
    tokens rounded to the nearest thousand, as Anthropic does; a debt reads 0), ``reset`` when
    the bucket is full again. ``tokens`` combines input and output as Anthropic does when no
    workspace limit applies: the sum of the two limits and of what they hold, full again when
    both are.
    """
    headers: dict[str, str] = {}
    resets = {}
    for name, state in states.items():
        family = name.replace(" ", "-")
        left = state.per_minute_left
        resets[name] = wall_now_s + state.full_in_s
        headers[f"anthropic-ratelimit-{family}-limit"] = str(_whole(state.per_minute))
        remaining = _whole(left) if name == "requests" else _nearest_thousand(left)
        headers[f"anthropic-ratelimit-{family}-remaining"] = str(remaining)
        headers[f"anthropic-ratelimit-{family}-reset"] = format_rfc3339(resets[name])
    given, taken = states.get("input tokens"), states.get("output tokens")
    if given is not None and taken is not None:
        limit = _whole(given.per_minute) + _whole(taken.per_minute)
        left = given.per_minute_left + taken.per_minute_left
        reset = max(resets["input tokens"], resets["output tokens"])
        headers["anthropic-ratelimit-tokens-limit"] = str(limit)
        headers["anthropic-ratelimit-tokens-remaining"] = str(_nearest_thousand(left))
        headers["anthropic-ratelimit-tokens-reset"] = format_rfc3339(reset)
    return headers


def retry_after_headers(retry_after_s: float) -> dict[str, str]:
    """Return ``Retry-After`` (whole seconds, rounded up) and ``retry-after-ms`` (rounded up).

    >>> retry_after_headers(1.2)
    {'retry-after': '2', 'retry-after-ms': '1200'}
    """
    ms = math.ceil(retry_after_s * 1000.0)
    return {"retry-after": str(math.ceil(ms / 1000)), "retry-after-ms": str(ms)}
