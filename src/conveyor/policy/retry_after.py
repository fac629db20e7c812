"""Read a server's "retry after" hint from an exception, purely.

Understood, in this order:

1. `conveyor.RetryAfter(seconds)` raised by the user's function;
2. an attribute ``retry_after`` (seconds) on the exception;
3. HTTP headers found at ``exc.headers`` or ``exc.response.headers`` (httpx, aiohttp, requests and
   the openai SDK all put them in one of those places): ``retry-after-ms`` (milliseconds, as
   OpenAI sends it), then ``retry-after`` as delta-seconds or an HTTP-date (RFC 9110 §10.2.3).

Anything malformed is ignored (``None``), never raised: a bad header must not crash a run.
"""

from __future__ import annotations

import email.utils
import math
from typing import TYPE_CHECKING, Any

from ..errors import RetryAfter

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["http_status_of", "parse_retry_after", "retry_after_s"]

# A server asking for more than a day is not giving a usable hint.
_MAX_HINT_S = 86_400.0


def parse_retry_after(value: str, *, now_wall_s: float) -> float | None:
    """Parse a ``Retry-After`` header value into seconds from `now_wall_s` (a Unix time).

    >>> parse_retry_after("2", now_wall_s=0.0)
    2.0
    >>> parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now_wall_s=1445412470.0)
    10.0
    >>> parse_retry_after("soon", now_wall_s=0.0) is None
    True
    """
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when is None:  # pragma: no cover - older Pythons returned None
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - now_wall_s
        return _clean(max(0.0, seconds))
    return _clean(seconds)


def _clean(seconds: float) -> float | None:
    if math.isnan(seconds) or seconds < 0 or math.isinf(seconds):
        return None
    return min(seconds, _MAX_HINT_S)


def _headers_of(exc: BaseException) -> Mapping[str, Any] | None:
    for owner in (exc, getattr(exc, "response", None)):
        headers = getattr(owner, "headers", None)
        if headers is not None and hasattr(headers, "get"):
            return headers  # type: ignore[no-any-return]
    return None


def _header(headers: Mapping[str, Any], name: str) -> str | None:
    try:
        value = headers.get(name)
        if value is None:
            # Plain dicts are case-sensitive; HTTP header maps are not.
            for key, candidate in headers.items():
                if isinstance(key, str) and key.lower() == name:
                    value = candidate
                    break
    except Exception:  # a broken mapping must not crash the run
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    return value if isinstance(value, str) else None


def retry_after_s(exc: BaseException, *, now_wall_s: float) -> float | None:
    """Return the delay the exception asks for, in seconds, or ``None`` if it names none."""
    if isinstance(exc, RetryAfter):
        return _clean(exc.seconds)
    hinted = getattr(exc, "retry_after", None)
    if isinstance(hinted, int | float) and not isinstance(hinted, bool):
        return _clean(float(hinted))
    headers = _headers_of(exc)
    if headers is None:
        return None
    ms = _header(headers, "retry-after-ms")
    if ms is not None:
        try:
            return _clean(float(ms) / 1000.0)
        except ValueError:
            pass
    value = _header(headers, "retry-after")
    if value is not None:
        return parse_retry_after(value, now_wall_s=now_wall_s)
    return None


def http_status_of(exc: BaseException) -> int | None:
    """Return the HTTP status an exception carries, if any (``status_code`` or ``status``).

    Looks on the exception and on its ``response`` attribute.
    """
    for owner in (exc, getattr(exc, "response", None)):
        if owner is None:
            continue
        for attr in ("status_code", "status"):
            status = getattr(owner, attr, None)
            if isinstance(status, int) and not isinstance(status, bool) and 100 <= status <= 599:
                return status
    return None
