"""What an LLM API's error says beyond its status, read purely from the exception.

- **An exhausted quota.** OpenAI answers HTTP 429 both when a rate limit is hit (wait and it
  passes) and when the account's quota is used up (``"code": "insufficient_quota"``: waiting
  never helps). Anthropic says "you can spend no more" three ways: a 429 naming the spend
  limit with no ``retry-after`` (the monthly spend cap), and a 400 ``invalid_request_error``
  saying the workspace's API usage limit is reached or the credit balance is too low.
  `quota_exhausted` tells them all from passing rate limits and ordinary bad requests.
- **``x-should-retry``.** OpenAI sends ``x-should-retry: true|false`` to say whether an
  error is worth retrying, whatever its status; `should_retry_hint` reads it (the OpenAI SDK
  honours it the same way).

The error object is looked for where the HTTP clients keep it: Conveyor's
`HTTPStatusError` (``exc.response.body``), the ``openai`` SDK's ``APIStatusError``
(``exc.code``, ``exc.type``, ``exc.body``), or any exception with a ``body`` mapping.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from .retry_after import http_status_of, retry_after_s

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["QUOTA_CODES", "api_error_fields", "quota_exhausted", "should_retry_hint"]

#: Error codes (or types) that mean the quota is used up, not that a rate limit was hit.
QUOTA_CODES = frozenset({"insufficient_quota"})
# A 429's message naming a spend cap (Anthropic's has no retry-after; a rate limit's has one).
_SPEND_LIMIT_429 = re.compile(r"spend(ing)? limit|usage limit|credit balance", re.IGNORECASE)
# A 400's message saying the account can spend no more: Anthropic's workspace usage limit, and
# an empty credit balance. Any other 400 is a bad request, failed alone.
_SPEND_LIMIT_400 = re.compile(
    r"reached your specified (workspace )?API usage limit|credit balance is too low",
    re.IGNORECASE,
)


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
    """Whether `exc` says the account's quota or spend limit is used up (see the docstring).

    >>> class E(Exception):
    ...     status_code = 429
    ...     body = {"error": {"code": "insufficient_quota"}}
    >>> quota_exhausted(E())
    True
    >>> class Workspace(Exception):
    ...     status_code = 400
    ...     body = {"type": "error", "error": {"type": "invalid_request_error",
    ...             "message": "You have reached your specified workspace API usage limits."}}
    >>> quota_exhausted(Workspace())
    True
    """
    status = http_status_of(exc)
    if status is not None and status not in (400, 429):
        return False
    code, kind, message = api_error_fields(exc)
    if status != 400 and (code in QUOTA_CODES or kind in QUOTA_CODES):
        return True
    if message is None:
        return False
    if status == 429:
        # Any retry-after (dated against the epoch: only its presence matters here) says
        # the limit passes.
        hinted = retry_after_s(exc, now_wall_s=0.0) is not None
        return not hinted and _SPEND_LIMIT_429.search(message) is not None
    if status == 400:
        return kind in (None, "invalid_request_error") and bool(_SPEND_LIMIT_400.search(message))
    return False


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
