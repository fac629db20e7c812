"""The one error classifier: each API's way of saying slow down, busy, used up, or try again."""

from enum import Enum
from typing import Any

import pytest

from conveyor import QuotaExhausted, RetryAfter
from conveyor.policy.classify import classify
from conveyor.policy.retry import is_transient

RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
QUOTA_FAILURE = "type.googleapis.com/google.rpc.QuotaFailure"


class Http(Exception):
    """An HTTP error as the clients carry it: a status, headers, a JSON body."""

    def __init__(self, status: int, body: Any = None, headers: dict[str, str] | None = None):
        super().__init__(f"HTTP {status}")
        self.status_code = status
        self.body = body
        self.headers = headers or {}


class ClientError(Exception):
    """botocore's ClientError, by shape: ``response["Error"]["Code"]`` (HTTP 400 inside)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.response = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": 400}}


class StatusCode(Enum):
    """gRPC's status codes, by shape (an enum whose member is named RESOURCE_EXHAUSTED)."""

    RESOURCE_EXHAUSTED = 8
    INVALID_ARGUMENT = 3


class GrpcError(Exception):
    def __init__(self, code: StatusCode) -> None:
        super().__init__(code.name)
        self.code = code


@pytest.mark.parametrize(
    ("error", "kind", "wait"),
    [
        (Http(429, headers={"retry-after": "7"}), "rate_limited", 7.0),
        (Http(429), "rate_limited", None),
        (RetryAfter(3.0), "rate_limited", 3.0),
        (Http(529, {"type": "error", "error": {"type": "overloaded_error"}}), "overloaded", None),
        (Http(503, headers={"retry-after": "2"}), "overloaded", 2.0),
        (Http(500), "transient", None),
        (Http(400), "permanent", None),
        (TimeoutError(), "transient", None),
        (ValueError("bug"), "permanent", None),
        (Http(429, {"error": {"code": "insufficient_quota"}}), "quota", None),
        (QuotaExhausted("openai", "pay"), "quota", None),
    ],
)
def test_http_and_conveyor_errors(error, kind, wait):
    """Statuses, Retry-After, RetryAfter, 529, OpenAI's exhausted quota: kind and wait."""
    verdict = classify(error, now_wall_s=1_700_000_000.0)
    assert (verdict.kind, verdict.retry_after_s) == (kind, wait)
    assert is_transient(error) == (kind in {"rate_limited", "overloaded", "transient"})


def test_anthropics_spend_cap_is_a_quota_and_its_rate_limit_is_not():
    """A 429 naming the spend limit with no retry-after stops; one with retry-after waits."""
    cap = Http(
        429,
        {"type": "error", "error": {"type": "rate_limit_error", "message": "You have reached"
         " your specified workspace API usage limits; your spend limit resets next month."}},
    )  # fmt: skip
    limit = Http(
        429,
        {"type": "error", "error": {"type": "rate_limit_error", "message": "Number of request"
         " tokens has exceeded your per-minute rate limit"}},
        headers={"retry-after": "12"},
    )  # fmt: skip
    assert classify(cap, now_wall_s=0.0).kind == "quota"
    assert not is_transient(cap)
    assert (
        classify(limit, now_wall_s=0.0).kind,
        classify(limit, now_wall_s=0.0).retry_after_s,
    ) == (
        "rate_limited",
        12.0,
    )


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("ProvisionedThroughputExceededException", "rate_limited"),
        ("ThrottlingException", "rate_limited"),
        ("RequestLimitExceeded", "rate_limited"),
        ("SlowDown", "rate_limited"),
        ("ServiceUnavailable", "transient"),
        ("ServiceQuotaExceededException", "quota"),
        ("ValidationException", "permanent"),
        ("ConditionalCheckFailedException", "permanent"),
    ],
)
def test_aws_errors_are_read_by_their_code_without_botocore(code, kind):
    """botocore's throttles are rate limits (retried), whatever the HTTP 400 around them."""
    assert classify(ClientError(code)).kind == kind
    assert is_transient(ClientError(code)) == (kind in {"rate_limited", "transient"})


def test_googles_resource_exhausted_waits_its_retry_delay_or_stops_on_a_daily_quota():
    """RetryInfo's delay is the wait; a per-day QuotaFailure is an exhausted quota."""
    minute = Http(
        429,
        {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "details": [
            {"@type": RETRY_INFO, "retryDelay": "31s"}]}},
    )  # fmt: skip
    daily = Http(
        429,
        {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "details": [
            {"@type": QUOTA_FAILURE, "violations": [
                {"quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier"}]}]}},
    )  # fmt: skip
    assert (classify(minute).kind, classify(minute).retry_after_s) == ("rate_limited", 31.0)
    assert classify(daily).kind == "quota"
    assert classify(GrpcError(StatusCode.RESOURCE_EXHAUSTED)).kind == "rate_limited"
    assert classify(GrpcError(StatusCode.INVALID_ARGUMENT)).kind == "permanent"


def test_the_apis_should_retry_header_wins_over_the_status():
    """x-should-retry: false on a 500 is permanent; true on a 409 is transient."""
    assert classify(Http(500, headers={"x-should-retry": "false"})).kind == "permanent"
    assert classify(Http(409, headers={"x-should-retry": "true"})).kind == "transient"
