"""The one error classifier: each API's way of saying slow down, busy, used up, or try again."""

import doctest
import re
from enum import Enum
from pathlib import Path
from typing import Any

import pytest

from conveyor import Classifier, ConfigError, QuotaExhausted, RetryAfter, Verdict, rule_for
from conveyor.policy import classify as classify_module
from conveyor.policy import verdict as verdict_module
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


def anthropic_error(status: int, kind: str, message: str, **headers: str) -> Http:
    body = {"type": "error", "error": {"type": kind, "message": message}}
    return Http(status, body, headers=headers)


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (
            anthropic_error(
                400,
                "invalid_request_error",
                "You have reached your specified workspace API usage limits. You will regain"
                " access on 2026-01-01 at 00:00 UTC.",
            ),
            "quota",
        ),
        (
            anthropic_error(
                400,
                "invalid_request_error",
                "Your credit balance is too low to access the Anthropic API. Please go to Plans"
                " & Billing to upgrade or purchase credits.",
            ),
            "quota",
        ),
        (anthropic_error(400, "invalid_request_error", "max_tokens: Field required"), "permanent"),
        (
            anthropic_error(
                429, "rate_limit_error", "over your monthly spend limit", **{"retry-after": "30"}
            ),
            "rate_limited",
        ),
        (anthropic_error(500, "api_error", "usage limit of the cache"), "transient"),
    ],
    ids=["workspace-usage-limit", "credit-balance", "bad-request", "spend-words-but-wait", "500"],
)
def test_anthropics_400s_that_mean_no_more_spending_are_a_quota(error, kind):
    """A workspace's usage limit and an empty balance stop; other 400s fail; a wait waits."""
    assert classify(error, now_wall_s=0.0).kind == kind
    assert classify(error).kind == kind  # whether or not a retry-after could be dated


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


class Streamed(Exception):
    """An SDK's error for an error event inside a stream: the response's status was 200."""

    def __init__(self, body: Any) -> None:
        super().__init__("stream error")
        self.status_code = 200
        self.body = body


def test_529_and_a_streamed_overloaded_error_are_overloaded_and_retried():
    """Anthropic's overloaded_error is retried, whether as a 529 or mid-stream (status 200)."""
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    for error in (Http(529, overloaded), Http(529), Streamed(overloaded)):
        assert classify(error).kind == "overloaded"
        assert is_transient(error)
    assert classify(
        Streamed({"type": "error", "error": {"type": "invalid_request_error"}})
    ).kind == ("permanent")


class GenaiError(Exception):
    """google-genai's APIError, by shape: ``code``, ``status``, and the JSON at ``details``."""

    def __init__(self, response_json: dict[str, Any]) -> None:
        super().__init__("429 RESOURCE_EXHAUSTED")
        self.code = 429
        self.details = response_json
        self.status = response_json["error"]["status"]


class ApiCoreError(Exception):
    """google-api-core's ResourceExhausted over gRPC, by shape: details are not dicts there."""

    code = 429

    def __init__(self, reason: str | None) -> None:
        super().__init__("429 Quota exceeded")
        self.grpc_status_code = StatusCode.RESOURCE_EXHAUSTED
        self.details = [object()]
        self.reason = reason


def google_body(*details: dict[str, Any]) -> dict[str, Any]:
    return {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "details": list(details)}}


PER_DAY = {
    "@type": QUOTA_FAILURE,
    "violations": [{"quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier"}],
}
PER_MINUTE = {
    "@type": QUOTA_FAILURE,
    "violations": [{"quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"}],
}
RESOURCE_QUOTA = {
    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
    "reason": "RESOURCE_QUOTA_EXCEEDED",
    "domain": "googleapis.com",
}
RETRY_31S = {"@type": RETRY_INFO, "retryDelay": "31s"}


@pytest.mark.parametrize(
    ("error", "kind", "wait"),
    [
        (GenaiError(google_body(PER_DAY, RETRY_31S)), "quota", None),
        (GenaiError(google_body(PER_MINUTE, RETRY_31S)), "rate_limited", 31.0),
        (Http(429, google_body(RESOURCE_QUOTA)), "quota", None),
        (GenaiError(google_body(RESOURCE_QUOTA)), "quota", None),
        (ApiCoreError("RESOURCE_QUOTA_EXCEEDED"), "quota", None),
        (ApiCoreError("RATE_LIMIT_EXCEEDED"), "rate_limited", None),
        (ApiCoreError(None), "rate_limited", None),
    ],
    ids=[
        "genai-per-day",
        "genai-per-minute",
        "error-info-resource-quota",
        "genai-resource-quota",
        "api-core-resource-quota",
        "api-core-rate-limit",
        "api-core-bare",
    ],
)
def test_google_shapes_of_the_sdks(error, kind, wait):
    """Gemini's per-day quota and RESOURCE_QUOTA_EXCEEDED stop; a per-minute limit waits."""
    verdict = classify(error)
    assert (verdict.kind, verdict.retry_after_s) == (kind, wait)


class OpenAIStatusError(Exception):
    """The openai SDK's APIStatusError, by shape: fields copied onto it, body the inner error."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.status_code = 429
        self.code = code
        self.type = code
        self.body = {"code": code, "type": code, "message": "You exceeded your current quota"}


def test_openai_sdk_insufficient_quota_is_a_quota():
    """The SDK's 429 with insufficient_quota stops; its 429 with rate_limit_exceeded waits."""
    assert classify(OpenAIStatusError("insufficient_quota")).kind == "quota"
    assert classify(OpenAIStatusError("rate_limit_exceeded")).kind == "rate_limited"


def test_retry_after_ms_wins_over_retry_after():
    """OpenAI's retry-after-ms is finer than retry-after, so it is the wait."""
    error = Http(429, headers={"retry-after": "7", "retry-after-ms": "1500"})
    assert classify(error, now_wall_s=0.0).retry_after_s == 1.5


# Your own rules.


class SlowDown(Exception):
    """A user's SDK's throttle, which no built-in reading knows."""


class BadRequest(Exception):
    def __init__(self, body: dict[str, str]) -> None:
        super().__init__("HTTP 400")
        self.status_code = 400
        self.body = body


def monthly_quota(exc: BaseException) -> Verdict | None:
    """A 400 whose body says the month's quota is used up."""
    if isinstance(exc, BadRequest) and exc.body.get("code") == "monthly_quota":
        return Verdict("quota", reason="the month's quota is used up")
    return None


MINE = Classifier(rules=(rule_for(SlowDown, "rate_limited", retry_after_s=2.0), monthly_quota))


@pytest.mark.parametrize(
    ("error", "kind", "wait"),
    [
        (SlowDown(), "rate_limited", 2.0),
        (BadRequest({"code": "monthly_quota"}), "quota", None),
        (BadRequest({"code": "bad_field"}), "permanent", None),  # no rule: the built-in reading
        (Http(429, headers={"retry-after": "7"}), "rate_limited", 7.0),
    ],
)
def test_user_rules_come_first_then_the_built_in_reading(error, kind, wait):
    """A rule's verdict wins; an error no rule claims is read as without rules."""
    verdict = MINE.classify(error, now_wall_s=0.0)
    assert (verdict.kind, verdict.retry_after_s) == (kind, wait)
    assert not classify(SlowDown()).retryable  # the module's classifier is untouched


def test_the_first_rule_that_answers_wins():
    """Rules run in order; None passes to the next one; later rules are not asked."""
    asked: list[str] = []

    def passes(exc: BaseException) -> Verdict | None:
        asked.append("passes")
        return None

    def never(exc: BaseException) -> Verdict | None:
        asked.append("never")
        return Verdict("permanent")

    classifier = Classifier(rules=[passes, rule_for(ValueError, "transient"), never])  # type: ignore[arg-type]  # a list is taken too
    assert classifier.classify(ValueError()).kind == "transient"
    assert asked == ["passes"]
    assert isinstance(classifier.rules, tuple)


def test_rule_for_matches_types_tuples_and_predicates():
    """A type, a tuple of types, or a predicate; the reason says which rule."""
    by_tuple = rule_for((KeyError, SlowDown), "overloaded")
    by_test = rule_for(lambda exc: "quota" in str(exc), "quota", reason="said quota")
    assert by_tuple(SlowDown()) == Verdict("overloaded", None, "(KeyError, SlowDown) (a rule)")
    assert by_tuple(ValueError()) is None
    assert by_test(ValueError("over quota")) == Verdict("quota", None, "said quota")
    assert by_test(ValueError("bad")) is None
    assert repr(rule_for(SlowDown, "rate_limited", retry_after_s=2)) == (
        "rule_for(SlowDown, 'rate_limited', retry_after_s=2)"
    )


def not_a_verdict(exc: BaseException) -> Any:
    return "rate_limited"


@pytest.mark.parametrize(
    ("make", "named"),
    [
        (lambda: Classifier(rules=(42,)), "rule 0 (42) is not callable"),  # type: ignore[arg-type]
        (lambda: Classifier(rules=(SlowDown,)), "rule 0 is the class SlowDown"),  # type: ignore[arg-type]
        (lambda: Classifier(rules=monthly_quota), "rules is a tuple of rules"),  # type: ignore[arg-type]
        (lambda: Classifier(rules="x"), "rules is a tuple of rules"),  # type: ignore[arg-type]
        (lambda: rule_for(SlowDown, "rate-limited"), "kind must be one of"),  # type: ignore[arg-type]
        (lambda: rule_for(SlowDown, "quota", retry_after_s=-1), "retry_after_s=-1"),
        (lambda: rule_for(SlowDown, "quota", retry_after_s=float("inf")), "retry_after_s=inf"),
        (lambda: rule_for("SlowDown", "quota"), "match must be"),  # type: ignore[arg-type]
        (lambda: rule_for((), "quota"), "match must be"),
        (lambda: rule_for(int, "quota"), "match must be"),  # type: ignore[arg-type]
        (lambda: Verdict("quota", True), "retry_after_s=True"),
        (lambda: Verdict("quota", None, 3), "reason"),  # type: ignore[arg-type]
        (
            lambda: Classifier(rules=(not_a_verdict,)).classify(SlowDown()),
            "rule not_a_verdict answered 'rate_limited' for SlowDown",
        ),
    ],
    ids=[
        "not-callable",
        "a-class",
        "not-a-tuple",
        "a-string",
        "bad-kind",
        "negative-wait",
        "infinite-wait",
        "match-string",
        "match-empty",
        "match-not-exception",
        "verdict-bool-wait",
        "verdict-reason",
        "answers-not-a-verdict",
    ],
)
def test_bad_rules_are_config_errors_naming_them(make, named):
    """A bad rule is refused when made, or, if it answers nonsense, when it does: by name."""
    with pytest.raises(ConfigError, match=re.escape(named)):
        make()


def test_a_classifier_is_a_frozen_value():
    """Classifiers compare and hash by their rules; none can be changed in place."""
    rule = rule_for(SlowDown, "rate_limited")
    assert Classifier(rules=(rule,)) == Classifier(rules=[rule])  # type: ignore[arg-type]
    assert hash(Classifier(rules=(rule,))) == hash(Classifier(rules=(rule,)))
    with pytest.raises(AttributeError):
        MINE.rules = ()  # type: ignore[misc]


@pytest.mark.parametrize("module", [classify_module, verdict_module])
def test_docstring_examples(module):
    """The examples in the module docstrings run and hold."""
    assert doctest.testmod(module).failed == 0


RETRIES_PAGE = Path(__file__).resolve().parents[2] / "docs" / "explanations" / "retries.md"


def test_the_retries_page_examples_run():
    """The examples of docs/explanations/retries.md ("Your own rules") run and hold."""
    result = doctest.testfile(str(RETRIES_PAGE), module_relative=False)
    assert result.attempted >= 10  # the examples are still doctests, not plain code blocks
    assert result.failed == 0
