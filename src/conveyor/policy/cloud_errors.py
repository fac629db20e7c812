"""What AWS's and Google's errors say, read purely from the exception's shape, no SDK imported.

- **AWS**: botocore's ``ClientError`` carries ``exc.response == {"Error": {"Code": ...}}``
  (inside an HTTP 400 for a throttle); the code says throttled, passing fault, or quota.
- **Google**: ``RESOURCE_EXHAUSTED`` says "slow down" or "used up", told apart by the error's
  ``details``: a ``RetryInfo`` names the wait; a ``QuotaFailure`` whose quota id is per day, or
  an ``ErrorInfo`` whose reason is ``RESOURCE_QUOTA_EXCEEDED`` (google.api.ErrorReason: "there
  is not enough resource quota"), says waiting will not help. The error is found as the JSON
  body (``{"error": {"status": ..., "details": [...]}}``) at ``exc.body``,
  ``exc.response.body``, or ``exc.details`` (google-genai keeps the JSON there), or as a gRPC
  status on ``exc.grpc_status_code`` (google-api-core, with its ``ErrorInfo`` reason at
  ``exc.reason``), ``exc.status`` or ``exc.code``.
"""

from __future__ import annotations

import re
from typing import Any

from .verdict import Verdict

__all__ = ["AWS_QUOTA_CODES", "AWS_THROTTLE_CODES", "AWS_TRANSIENT_CODES", "aws", "google"]

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
_ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
#: google.api.ErrorReason values that mean a quota is used up, not a passing rate limit.
_GOOGLE_QUOTA_REASONS = frozenset({"RESOURCE_QUOTA_EXCEEDED"})
_GOOGLE_DELAY = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")


def aws(exc: BaseException) -> Verdict | None:
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


def google(exc: BaseException) -> Verdict | None:
    """Google's ``RESOURCE_EXHAUSTED``: a rate limit (with its wait), or a used-up quota."""
    error = _google_error(exc)
    if error is None:
        return None
    details = error.get("details")
    delay, used_up = _google_details(details if isinstance(details, list) else [])
    reason = getattr(exc, "reason", None)  # google-api-core: its ErrorInfo's reason
    if isinstance(reason, str) and reason in _GOOGLE_QUOTA_REASONS:
        used_up = used_up or f"Google {reason}"
    if used_up:
        return Verdict("quota", None, used_up)
    return Verdict("rate_limited", delay, "Google RESOURCE_EXHAUSTED")


def _google_details(details: list[Any]) -> tuple[float | None, str]:
    """The wait a ``RetryInfo`` names, and why the quota is used up ("" if it is not)."""
    delay = None
    used_up = ""
    for detail in details:
        if not isinstance(detail, dict):
            continue
        kind = detail.get("@type")
        if kind == _RETRY_INFO:
            found = _GOOGLE_DELAY.match(str(detail.get("retryDelay", "")))
            if found is not None:
                delay = float(found.group(1))
        elif kind == _QUOTA_FAILURE:
            violations = detail.get("violations")
            for violation in violations if isinstance(violations, list) else ():
                quota_id = violation.get("quotaId", "") if isinstance(violation, dict) else ""
                if "PerDay" in str(quota_id):
                    used_up = used_up or "Google per-day quota"
        elif kind == _ERROR_INFO and detail.get("reason") in _GOOGLE_QUOTA_REASONS:
            used_up = used_up or f"Google {detail['reason']}"
    return delay, used_up


def _google_error(exc: BaseException) -> dict[str, Any] | None:
    """The error object of a Google ``RESOURCE_EXHAUSTED``, or None (``{...}`` if bare)."""
    for owner in (exc, getattr(exc, "response", None)):
        for attr in ("body", "details"):
            data = getattr(owner, attr, None)
            if isinstance(data, dict):
                error = data.get("error", data)
                if isinstance(error, dict) and error.get("status") == "RESOURCE_EXHAUSTED":
                    return error
    for attr in ("grpc_status_code", "status", "code"):
        status = getattr(exc, attr, None)
        if getattr(status, "name", status) == "RESOURCE_EXHAUSTED":  # a gRPC StatusCode or name
            details = getattr(exc, "details", None)
            return {"details": details} if isinstance(details, list) else {}
    return None
