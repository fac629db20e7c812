"""What an LLM API's error says beyond its status, read purely from the exception.

- **An exhausted quota.** OpenAI answers HTTP 429 both when a rate limit is hit (wait and it
  passes) and when the account's quota is used up (``"code": "insufficient_quota"``: waiting
  never helps). `quota_exhausted` tells them apart.
- **``x-should-retry``.** OpenAI sends ``x-should-retry: true|false`` to say whether an
  error is worth retrying, whatever its status; `should_retry_hint` reads it (the OpenAI SDK
  honours it the same way).

The error object is looked for where the HTTP clients keep it: Conveyor's
`HTTPStatusError` (``exc.response.body``), the ``openai`` SDK's ``APIStatusError``
(``exc.code``, ``exc.type``, ``exc.body``), or any exception with a ``body`` mapping.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .retry_after import http_status_of

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["QUOTA_CODES", "api_error_fields", "quota_exhausted", "should_retry_hint"]

#: Error codes (or types) that mean the quota is used up, not that a rate limit was hit.
QUOTA_CODES = frozenset({"insufficient_quota"})


def _error_object(data: object) -> Mapping[str, Any] | None:
    """The OpenAI error object in `data`: ``{"error": {...}}`` or the inner object itself."""
    if not isinstance(data, dict):
        return None
    inner = data.get("error")
    if isinstance(inner, dict):
        return inner
    return data if ("code" in data or "type" in data) else None


def api_error_fields(exc: BaseException) -> tuple[str | None, str | None, str | None]:
    """Return the API's error ``(code, type, message)`` carried by `exc`, each None if absent.

    >>> class E(Exception):
    ...     body = {"error": {"code": "insufficient_quota", "type": "x", "message": "Pay."}}
    >>> api_error_fields(E())
    ('insufficient_quota', 'x', 'Pay.')
    """
    candidates: list[object] = [getattr(exc, "body", None)]
    response = getattr(exc, "response", None)
    if response is not None:
        candidates.append(getattr(response, "body", None))
    for data in candidates:
        error = _error_object(data)
        if error is not None:
            return _text(error.get("code")), _text(error.get("type")), _text(error.get("message"))
    # The openai SDK also copies the fields onto the exception.
    return _text(getattr(exc, "code", None)), _text(getattr(exc, "type", None)), None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def quota_exhausted(exc: BaseException) -> bool:
    """Whether `exc` says the account's quota is used up (not a passing rate limit).

    >>> class E(Exception):
    ...     status_code = 429
    ...     body = {"error": {"code": "insufficient_quota"}}
    >>> quota_exhausted(E())
    True
    """
    status = http_status_of(exc)
    if status is not None and status != 429:
        return False
    code, kind, _ = api_error_fields(exc)
    return code in QUOTA_CODES or kind in QUOTA_CODES


def should_retry_hint(exc: BaseException) -> bool | None:
    """The ``x-should-retry`` header's verdict: True, False, or None when absent or unclear."""
    for owner in (exc, getattr(exc, "response", None)):
        headers = getattr(owner, "headers", None)
        if headers is None or not hasattr(headers, "get"):
            continue
        try:
            value = headers.get("x-should-retry")
            if value is None:
                value = next(
                    (v for k, v in headers.items() if str(k).lower() == "x-should-retry"), None
                )
        except Exception:  # a broken mapping must not crash the run
            return None
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        if isinstance(value, str):
            verdict = value.strip().lower()
            if verdict in {"true", "false"}:
                return verdict == "true"
        return None
    return None
