"""What a failed call's error means, read purely from the exception: one classifier for all.

Every API says "slow down", "we are overloaded", "you have nothing left" and "try again" in
its own way. `classify` reads them all, importing no SDK (shapes are recognised by their
attributes), and answers one `Verdict`:

- ``rate_limited``: a rate limit was hit; wait (for ``retry_after_s`` when the API named it)
  and retry. The limiter the call ran under pauses every sharer for that long. HTTP 429;
  `conveyor.RetryAfter` raised by a task; AWS throttles (botocore's ``ClientError`` with a
  throttling ``Error.Code``, HTTP 400 inside); Google's ``RESOURCE_EXHAUSTED`` with its
  ``RetryInfo`` delay.
- ``overloaded``: the service is busy, not the caller over its limit; back off and retry.
  HTTP 503 and Anthropic's 529 ``overloaded_error``.
- ``quota``: the account's quota or spend cap is used up; never retried, and the limiter
  admits no more calls. OpenAI's ``insufficient_quota``, Anthropic's 429 naming the spend
  limit (without a ``retry-after``), Google's per-day quota, AWS quota codes.
- ``transient``: worth another try (timeouts, dropped connections, 5xx, 408/425).
- ``permanent``: anything else (a bug or a bad request does not get better by retrying).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import (
    AttemptTimeout,
    CircuitOpen,
    DeadlineExceeded,
    InvalidAnswer,
    QuotaExhausted,
    RetryAfter,
)
from .llm_errors import api_error_fields, quota_exhausted, should_retry_hint
from .retry_after import http_status_of, retry_after_s

__all__ = [
    "AWS_QUOTA_CODES",
    "AWS_THROTTLE_CODES",
    "AWS_TRANSIENT_CODES",
    "RETRYABLE_STATUSES",
    "ErrorKind",
    "Verdict",
    "classify",
]

ErrorKind = Literal["rate_limited", "overloaded", "quota", "transient", "permanent"]

#: HTTP statuses that say "try again": timeout, too early, too many requests, server errors that
#: are usually passing, and 529 (overloaded). 501 (not implemented) and 505 are permanent.
RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504, 529})

# Transport errors of the HTTP clients users bring (httpx, aiohttp, openai), recognised by class
# name so that Conveyor imports none of them.
_TRANSIENT_CLASS_NAMES = frozenset(
    {
        "NetworkError",  # httpx: ConnectError, ReadError, WriteError, CloseError
        "TimeoutException",  # httpx
        "RemoteProtocolError",  # httpx: server closed the connection mid-answer
        "ClientConnectionError",  # aiohttp: refused, reset, server disconnected
        "ClientPayloadError",  # aiohttp: truncated body
        "APIConnectionError",  # openai (and APITimeoutError below it)
    }
)

#: botocore's ``Error.Code`` values that mean "throttled" (its own retry handler's list, and
#: the DynamoDB, S3 and EC2 ones).
AWS_THROTTLE_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
    }
)
#: botocore's codes of a passing server fault: retried, not a rate limit.
AWS_TRANSIENT_CODES = frozenset(
    {
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
        "InternalFailure",
        "InternalServerError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
    }
)
#: AWS codes that mean a quota is used up: waiting does not help.
AWS_QUOTA_CODES = frozenset({"ServiceQuotaExceededException", "QuotaExceededException"})

_RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
_QUOTA_FAILURE = "type.googleapis.com/google.rpc.QuotaFailure"
_GOOGLE_DELAY = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")
_SPEND_LIMIT = re.compile(r"spend(ing)? limit|usage limit|credit balance", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What an error means: its kind, the wait the API asked for (if any), and why."""

    kind: ErrorKind
    retry_after_s: float | None = None
    reason: str = ""

    @property
    def retryable(self) -> bool:
        """Whether another try may succeed (rate limited, overloaded or transient)."""
        return self.kind in ("rate_limited", "overloaded", "transient")


def classify(exc: BaseException, *, now_wall_s: float | None = None) -> Verdict:
    """The `Verdict` on `exc`; see the module docstring.

    `now_wall_s` (Unix seconds) dates a ``Retry-After`` given as a date; without it, the
    verdict carries no wait (what is retryable does not depend on it).

    >>> classify(RetryAfter(2.0))
    Verdict(kind='rate_limited', retry_after_s=2.0, reason='RetryAfter raised')
    """
    verdict = _ours(exc)
    if verdict is not None:
        return verdict
    hint = None if now_wall_s is None else retry_after_s(exc, now_wall_s=now_wall_s)
    verdict = _aws(exc) or _google(exc) or _by_status(exc, hint)
    should = should_retry_hint(exc)  # the API's own word on retrying wins over its status
    if should is False and verdict.kind != "quota":
        return Verdict("permanent", None, "x-should-retry: false")
    if should is True and verdict.kind == "permanent":
        return Verdict("transient", hint, "x-should-retry: true")
    return verdict


def _ours(exc: BaseException) -> Verdict | None:
    """Conveyor's own errors, and an exhausted quota (which no hint can make retryable)."""
    if isinstance(exc, RetryAfter):
        return Verdict("rate_limited", exc.seconds if exc.seconds >= 0 else None, "RetryAfter")
    if isinstance(exc, AttemptTimeout | CircuitOpen | InvalidAnswer):
        return Verdict("transient", None, type(exc).__name__)
    if isinstance(exc, DeadlineExceeded):
        return Verdict("permanent", None, "the item's deadline passed")
    if isinstance(exc, QuotaExhausted) or quota_exhausted(exc):
        return Verdict("quota", None, "the quota is used up")
    return None


def _by_status(exc: BaseException, hint: float | None) -> Verdict:
    status = http_status_of(exc)
    if status == 429:
        _, _, message = api_error_fields(exc)
        if hint is None and message is not None and _SPEND_LIMIT.search(message):
            return Verdict("quota", None, message)  # Anthropic's spend cap: no retry-after
        return Verdict("rate_limited", hint, "HTTP 429")
    if status in (503, 529):
        return Verdict("overloaded", hint, f"HTTP {status}")
    if status is not None:
        kind: ErrorKind = "transient" if status in RETRYABLE_STATUSES else "permanent"
        return Verdict(kind, hint, f"HTTP {status}")
    if isinstance(exc, TimeoutError | ConnectionError) or any(
        cls.__name__ in _TRANSIENT_CLASS_NAMES for cls in type(exc).__mro__
    ):
        return Verdict("transient", None, type(exc).__name__)
    return Verdict("permanent", None, type(exc).__name__)


def _aws(exc: BaseException) -> Verdict | None:
    """Botocore's ``ClientError``: ``exc.response == {"Error": {"Code": ...}, ...}``."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    error = response.get("Error")
    code = error.get("Code") if isinstance(error, dict) else None
    if not isinstance(code, str):
        return None
    if code in AWS_THROTTLE_CODES:
        return Verdict("rate_limited", None, f"AWS {code}")
    if code in AWS_QUOTA_CODES:
        return Verdict("quota", None, f"AWS {code}")
    if code in AWS_TRANSIENT_CODES:
        return Verdict("transient", None, f"AWS {code}")
    return None


def _google(exc: BaseException) -> Verdict | None:
    """Google's ``RESOURCE_EXHAUSTED`` (gRPC status, or the JSON error's ``status``)."""
    error = _google_error(exc)
    if error is None:
        return None
    details = error.get("details")
    delay = None
    per_day = False
    for detail in details if isinstance(details, list) else ():
        if not isinstance(detail, dict):
            continue
        kind = detail.get("@type")
        if kind == _RETRY_INFO:
            found = _GOOGLE_DELAY.match(str(detail.get("retryDelay", "")))
            if found is not None:
                delay = float(found.group(1))
        elif kind == _QUOTA_FAILURE:
            for violation in detail.get("violations") or ():
                quota_id = violation.get("quotaId", "") if isinstance(violation, dict) else ""
                per_day = per_day or "PerDay" in str(quota_id)
    if per_day:
        return Verdict("quota", None, "Google per-day quota")
    return Verdict("rate_limited", delay, "Google RESOURCE_EXHAUSTED")


def _google_error(exc: BaseException) -> dict[str, Any] | None:
    """The error object of a Google ``RESOURCE_EXHAUSTED``, or None (``{}`` if bare)."""
    for owner in (exc, getattr(exc, "response", None)):
        body = getattr(owner, "body", None)
        if isinstance(body, dict):
            error = body.get("error", body)
            if isinstance(error, dict) and error.get("status") == "RESOURCE_EXHAUSTED":
                return error
    status = getattr(exc, "status", None) or getattr(exc, "code", None)
    name = getattr(status, "name", status)  # a gRPC StatusCode, or its name
    if name == "RESOURCE_EXHAUSTED":
        details = getattr(exc, "details", None)
        return {"details": details} if isinstance(details, list) else {}
    return None
