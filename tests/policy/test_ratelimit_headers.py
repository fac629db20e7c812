"""Reading rate-limit budgets from response headers, purely: real samples, garbage, properties."""

import doctest
import math
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict

from conveyor.policy import ratelimit_formats, ratelimit_headers
from conveyor.policy.ratelimit_headers import (
    Budget,
    RateLimitInfo,
    parse_duration_s,
    parse_rate_limit_headers,
)

# 2024-05-01T12:00:00Z, the "now" of the Anthropic samples.
NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC).timestamp()
GITHUB_RESET = 1_714_566_600  # 2024-05-01T12:30:00Z, 1800 s after NOW
NOTHING = RateLimitInfo(budgets={}, source="none")

OPENAI = {
    "x-ratelimit-limit-requests": "10000",
    "x-ratelimit-remaining-requests": "9999",
    "x-ratelimit-reset-requests": "6ms",
    "x-ratelimit-limit-tokens": "2000000",
    "x-ratelimit-remaining-tokens": "1999950",
    "x-ratelimit-reset-tokens": "1ms",
}
ANTHROPIC = {
    "anthropic-ratelimit-requests-limit": "4000",
    "anthropic-ratelimit-requests-remaining": "3999",
    "anthropic-ratelimit-requests-reset": "2024-05-01T12:00:30Z",
    "anthropic-ratelimit-tokens-limit": "400000",
    "anthropic-ratelimit-tokens-remaining": "398000",
    "anthropic-ratelimit-tokens-reset": "2024-05-01T12:00:01Z",
    "anthropic-ratelimit-input-tokens-limit": "320000",
    "anthropic-ratelimit-input-tokens-remaining": "319000",
    "anthropic-ratelimit-input-tokens-reset": "2024-05-01T12:00:01Z",
    "anthropic-ratelimit-output-tokens-limit": "80000",
    "anthropic-ratelimit-output-tokens-remaining": "79000",
    "anthropic-ratelimit-output-tokens-reset": "2024-05-01T12:00:02Z",
    "retry-after": "30",
}
ANTHROPIC_SPLIT = {
    "anthropic-ratelimit-requests-limit": "50",
    "anthropic-ratelimit-requests-remaining": "49",
    "anthropic-ratelimit-requests-reset": "2024-05-01T12:00:01Z",
    "anthropic-ratelimit-input-tokens-limit": "40000",
    "anthropic-ratelimit-input-tokens-remaining": "30000",  # 75 % left
    "anthropic-ratelimit-input-tokens-reset": "2024-05-01T12:00:15Z",
    "anthropic-ratelimit-output-tokens-limit": "8000",
    "anthropic-ratelimit-output-tokens-remaining": "2000",  # 25 % left: the tighter one
    "anthropic-ratelimit-output-tokens-reset": "2024-05-01T12:00:45Z",
}
IETF_06 = {
    "RateLimit-Limit": "100",
    "RateLimit-Remaining": "50",
    "RateLimit-Reset": "30",
    "RateLimit-Policy": "100;w=60",
}
IETF_07 = {"RateLimit": "limit=100, remaining=50, reset=30", "RateLimit-Policy": "100;w=60"}
IETF_08 = {
    "RateLimit-Policy": '"burst";q=100;w=60, "daily";q=1000;w=86400',
    "RateLimit": '"burst";r=50;t=30, "daily";r=20;t=3600',
}
GITHUB = {
    "x-ratelimit-limit": "5000",
    "x-ratelimit-remaining": "4999",
    "x-ratelimit-reset": str(GITHUB_RESET),
    "x-ratelimit-used": "1",
    "x-ratelimit-resource": "core",
}


def info(source: str, **budgets: Budget) -> RateLimitInfo:
    return RateLimitInfo(budgets=budgets, source=source)


def per_minute(
    limit: float | None, remaining: float, reset_s: float, granularity: float = 1.0
) -> Budget:
    """An OpenAI or Anthropic budget: stated per minute, refilled continuously."""
    return Budget(limit, remaining, reset_s, 60.0, granularity, refills=True)


def tokens_k(limit: float, remaining: float, reset_s: float) -> Budget:
    """An Anthropic token budget: its remaining is rounded to the nearest thousand."""
    return per_minute(limit, remaining, reset_s, granularity=1000.0)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param(
            OPENAI,
            info(
                "openai",
                requests=per_minute(10000, 9999, 0.006),
                tokens=per_minute(2_000_000, 1_999_950, 0.001),
            ),
            id="openai",
        ),
        pytest.param(
            {
                "x-ratelimit-limit-requests": "60",
                "x-ratelimit-limit-tokens": "150000",
                "x-ratelimit-remaining-requests": "59",
                "x-ratelimit-remaining-tokens": "149984",
                "x-ratelimit-reset-requests": "1s",
                "x-ratelimit-reset-tokens": "6m0s",
            },
            info(
                "openai",
                requests=per_minute(60, 59, 1.0),
                tokens=per_minute(150_000, 149_984, 360.0),
            ),
            id="openai-docs",
        ),
        pytest.param(
            {
                "x-ratelimit-limit-requests": "5000",
                "x-ratelimit-remaining-requests": "0",
                "x-ratelimit-reset-requests": "1h2m3.5s",
            },
            info("openai", requests=per_minute(5000, 0, 3723.5)),
            id="openai-requests-only",
        ),
        pytest.param(
            ANTHROPIC,
            info(
                "anthropic",
                requests=per_minute(4000, 3999, 30.0),
                tokens=tokens_k(400_000, 398_000, 1.0),
                input_tokens=tokens_k(320_000, 319_000, 1.0),
                output_tokens=tokens_k(80_000, 79_000, 2.0),
            ),
            id="anthropic",
        ),
        pytest.param(
            ANTHROPIC_SPLIT,
            info(
                "anthropic",
                requests=per_minute(50, 49, 1.0),
                input_tokens=tokens_k(40_000, 30_000, 15.0),
                output_tokens=tokens_k(8000, 2000, 45.0),
            ),
            id="anthropic-input-output-only",
        ),
        pytest.param(
            IETF_06, info("ietf", requests=Budget(100, 50, 30.0, 60.0)), id="ietf-06-separate"
        ),
        pytest.param(
            {"RateLimit-Limit": "10, 10;w=1, 1000;w=3600", "RateLimit-Remaining": "9"},
            info("ietf", requests=Budget(10, 9, None, period_s=1.0)),
            id="ietf-03-limit-with-quota-policies",
        ),
        pytest.param(
            IETF_07, info("ietf", requests=Budget(100, 50, 30.0, 60.0)), id="ietf-07-dictionary"
        ),
        pytest.param(
            IETF_08,
            info("ietf", requests=Budget(1000, 20, 3600.0, 86400.0)),
            id="ietf-08-lowest-wins",
        ),
        pytest.param(
            {"RateLimit-Policy": "default;q=100;w=60", "RateLimit": "default;r=50;t=30"},
            info("ietf", requests=Budget(100, 50, 30.0, 60.0)),
            id="ietf-08-tokens-not-strings",
        ),
        pytest.param(
            {
                "RateLimit-Policy": '"a";q=10;w=1, "b";q=600;w=60',
                "RateLimit": '"a";r=5;t=1, "b";r=5;t=40',
            },
            info("ietf", requests=Budget(10, 5, 1.0, 1.0)),
            id="ietf-08-equal-remaining-first-wins",
        ),
        pytest.param(
            {
                "RateLimit-Policy": (
                    '"rpm";q=60;w=60, "bytes";q=1000000;w=60;qu="content-bytes", '
                    '"tpm";q=90000;w=60;qu="tokens"'
                ),
                "RateLimit": '"rpm";r=59;t=60, "bytes";r=3;t=60, "tpm";r=89000;t=60',
            },
            info(
                "ietf",
                requests=Budget(60, 59, 60.0, 60.0),
                content_bytes=Budget(1_000_000, 3, 60.0, 60.0),
                tokens=Budget(90000, 89000, 60.0, 60.0),
            ),
            id="ietf-quota-units",
        ),
        pytest.param(
            {"RateLimit": '"default";r=50;t=30'},
            info("ietf", requests=Budget(None, 50, 30.0)),
            id="ietf-08-without-policy",
        ),
        pytest.param(
            {"RateLimit-Policy": '"default";q=100;w=60', "RateLimit-Remaining": "7"},
            info("ietf", requests=Budget(100, 7, None, 60.0)),
            id="ietf-limit-from-policy-only",
        ),
        pytest.param(
            GITHUB, info("x-ratelimit", requests=Budget(5000, 4999, 1800.0)), id="github-epoch"
        ),
        pytest.param(
            {"X-RateLimit-Limit": "60", "X-RateLimit-Remaining": "12", "X-RateLimit-Reset": "42"},
            info("x-ratelimit", requests=Budget(60, 12, 42.0)),
            id="x-ratelimit-delta",
        ),
        pytest.param(
            {"X-RateLimit-Remaining": "3", "X-RateLimit-Reset": str(GITHUB_RESET * 1000)},
            info("x-ratelimit", requests=Budget(None, 3, 1800.0)),
            id="x-ratelimit-epoch-milliseconds",
        ),
        pytest.param({}, NOTHING, id="empty"),
        pytest.param({"content-type": "application/json", "retry-after": "3"}, NOTHING, id="none"),
    ],
)
def test_real_samples(headers, expected):
    """Each provider's headers, as it sends them, read into one budget per dimension."""
    assert parse_rate_limit_headers(headers, now_wall_s=NOW) == expected


@pytest.mark.parametrize(
    ("headers", "source"),
    [
        ({**GITHUB, **IETF_06, **ANTHROPIC, **OPENAI}, "openai"),
        ({**GITHUB, **IETF_07, **ANTHROPIC}, "anthropic"),
        ({**GITHUB, **IETF_08}, "ietf"),
        ({**GITHUB, "x-ratelimit-remaining-requests": "lots"}, "x-ratelimit"),
        ({**GITHUB, "RateLimit": "garbage"}, "x-ratelimit"),
        ({"RateLimit": "garbage", "RateLimit-Remaining": "4"}, "ietf"),
    ],
)
def test_precedence(headers, source):
    """OpenAI, then Anthropic, then IETF, then X-RateLimit: the first that says anything wins."""
    assert parse_rate_limit_headers(headers, now_wall_s=NOW).source == source


class _BrokenItems(dict[str, str]):
    def items(self):
        raise RuntimeError("connection reset while reading headers")


class _BrokenIteration:
    def items(self):
        yield ("x-ratelimit-remaining-requests", "5")
        raise OSError("stream closed")


class _MultiItems:
    """Shaped like httpx.Headers: items() joins repeated fields, multi_items() does not."""

    def items(self):
        return [("ratelimit", '"a";r=5;t=1, "b";r=2;t=9')]

    def multi_items(self):
        return [("ratelimit", '"a";r=5;t=1'), ("ratelimit", '"b";r=2;t=9')]


EXPECTED_OPENAI = parse_rate_limit_headers(OPENAI, now_wall_s=NOW)


@pytest.mark.parametrize(
    "headers",
    [
        {name.title(): value for name, value in OPENAI.items()},
        {name.upper(): value for name, value in OPENAI.items()},
        list(OPENAI.items()),
        [(name.encode(), value.encode("latin-1")) for name, value in OPENAI.items()],
        CIMultiDict(OPENAI),
        [*OPENAI.items(), ("set-cookie", "a=1"), ("set-cookie", "b=2")],
        [*OPENAI.items(), "not a pair", ("x", 1), (None, "y"), ("a", "b", "c")],
    ],
    ids=["title-case", "upper-case", "pairs", "bytes", "multidict", "repeats", "junk-pairs"],
)
def test_header_containers(headers):
    """Dicts in any case, pairs, bytes and multidicts all read the same; junk pairs are skipped."""
    assert parse_rate_limit_headers(headers, now_wall_s=NOW) == EXPECTED_OPENAI


def test_repeated_list_fields_are_one_list():
    """Repeated RateLimit fields join into one list (RFC 9110 §5.3), via multi_items if offered."""
    headers: Any = _MultiItems()  # duck-typed like httpx.Headers, not a Mapping
    result = parse_rate_limit_headers(headers, now_wall_s=NOW)
    assert result == info("ietf", requests=Budget(None, 2, 9.0))
    pairs = [("RateLimit", '"a";r=5;t=1'), ("RateLimit", '"b";r=2;t=9')]
    assert parse_rate_limit_headers(pairs, now_wall_s=NOW) == result


@pytest.mark.parametrize(
    "headers",
    [_BrokenItems(OPENAI), _BrokenIteration(), None, 42, "x-ratelimit-limit: 5", object()],
    ids=["items-raises", "iteration-raises", "none", "int", "str", "object"],
)
def test_broken_header_objects_give_nothing(headers):
    """A header object that raises, or is no header object at all, yields 'none', never raises."""
    assert parse_rate_limit_headers(headers, now_wall_s=NOW) == NOTHING


def openai_requests(limit: str = "100", remaining: str = "50", reset: str = "1s") -> dict[str, str]:
    return {
        "x-ratelimit-limit-requests": limit,
        "x-ratelimit-remaining-requests": remaining,
        "x-ratelimit-reset-requests": reset,
    }


def anthropic_requests(reset: str) -> dict[str, str]:
    return {
        "anthropic-ratelimit-requests-remaining": "1",
        "anthropic-ratelimit-requests-reset": reset,
    }


def requests_of(headers: dict[str, str]) -> Budget | None:
    """The requests budget's three figures (limit, remaining, reset); its period is tested apart."""
    budget = parse_rate_limit_headers(headers, now_wall_s=NOW).requests
    return None if budget is None else Budget(budget.limit, budget.remaining, budget.reset_s)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (openai_requests(limit="lots"), Budget(None, 50, 1.0)),
        (openai_requests(limit="-1"), Budget(None, 50, 1.0)),
        (openai_requests(limit="nan"), Budget(None, 50, 1.0)),
        (openai_requests(limit="inf"), Budget(None, 50, 1.0)),
        (openai_requests(limit="1e3"), Budget(None, 50, 1.0)),
        (openai_requests(limit="1_000"), Budget(None, 50, 1.0)),
        (openai_requests(limit="\u0661\u0662"), Budget(None, 50, 1.0)),  # Arabic-Indic "12"
        (openai_requests(limit="9" * 400), Budget(None, 50, 1.0)),
        (openai_requests(limit="100000000000000000000"), Budget(None, 50, 1.0)),
        (openai_requests(limit=""), Budget(None, 50, 1.0)),
        (openai_requests(limit="  "), Budget(None, 50, 1.0)),
        (openai_requests(limit="100\x1f"), Budget(100, 50, 1.0)),  # str.strip() whitespace
        (openai_requests(limit="\xa0100\t"), Budget(100, 50, 1.0)),
        (openai_requests(remaining="-3"), Budget(100, 0, 1.0)),  # overdrawn reads as empty
        (openai_requests(remaining="250"), Budget(100, 250, 1.0)),  # kept as given
        (openai_requests(remaining="many"), Budget(100, None, 1.0)),
        (openai_requests(reset="5x"), Budget(100, 50, None)),
        (openai_requests(reset="-1s"), Budget(100, 50, None)),
        (openai_requests(reset="1s "), Budget(100, 50, 1.0)),  # surrounding space is fine
        (openai_requests(reset="1 s"), Budget(100, 50, None)),
        (openai_requests(reset="99999h"), Budget(100, 50, None)),  # past a month
        (openai_requests(reset=""), Budget(100, 50, None)),
        (openai_requests("x", "y", "z"), None),
        (anthropic_requests("2024-05-01T11:59:00Z"), Budget(None, 1, 0.0)),  # past is now
        (anthropic_requests("2024-05-01T12:00:30"), Budget(None, 1, None)),  # no offset
        (anthropic_requests("2024-05-01"), Budget(None, 1, None)),
        (anthropic_requests("2024-13-01T00:00:00Z"), Budget(None, 1, None)),
        (anthropic_requests("2024-05-01T25:00:00Z"), Budget(None, 1, None)),
        (anthropic_requests("2024-05-01T12:00:30+99:00"), Budget(None, 1, None)),
        (anthropic_requests("9999-12-31T23:59:59Z"), Budget(None, 1, None)),  # too far away
        (anthropic_requests("0000-01-01T00:00:00Z"), Budget(None, 1, None)),
        (anthropic_requests("tomorrow"), Budget(None, 1, None)),
        (anthropic_requests("Wed, 01 May 2024 12:00:30 GMT"), Budget(None, 1, None)),
        ({"RateLimit": '"p";r=-5;t=-1', "RateLimit-Policy": '"p";q=x'}, Budget(None, 0, None)),
        ({"RateLimit": "limit=ten, remaining=5, reset=soon"}, Budget(None, 5, None)),
        ({"RateLimit": '"unclosed;r=5'}, None),
        ({"RateLimit-Limit": ", , ;", "RateLimit-Reset": "30"}, Budget(None, None, 30.0)),
        ({"X-RateLimit-Reset": "-5", "X-RateLimit-Remaining": "1"}, Budget(None, 1, None)),
        ({"X-RateLimit-Reset": "1000000001", "X-RateLimit-Remaining": "1"}, Budget(None, 1, 0)),
        ({"X-RateLimit-Reset": "1000000000", "X-RateLimit-Remaining": "1"}, Budget(None, 1, None)),
        ({"X-RateLimit-Reset": "5000000000", "X-RateLimit-Remaining": "1"}, Budget(None, 1, None)),
        ({"X-RateLimit-Reset": "86400000", "X-RateLimit-Remaining": "1"}, Budget(None, 1, None)),
    ],
)
def test_malformed_values(headers, expected):
    """A malformed field reads as None on its own; the other fields of its budget still count."""
    assert requests_of(headers) == expected


@pytest.mark.parametrize(
    ("reset", "expected"),
    [
        ("2024-05-01T12:00:30Z", 30.0),
        ("2024-05-01t12:00:30z", 30.0),
        ("2024-05-01 12:00:30Z", 30.0),
        ("2024-05-01T12:00:30.250Z", 30.25),
        ("2024-05-01T12:00:30.123456789Z", 30.123456789),
        ("2024-05-01T14:00:30+02:00", 30.0),
        ("2024-05-01T11:00:30-01:00", 30.0),
        ("2024-05-01T12:00:30-01:00", 3630.0),
    ],
)
def test_anthropic_reset_times(reset, expected):
    """RFC 3339 resets in every legal spelling become seconds from now."""
    budget = requests_of(anthropic_requests(reset))
    assert budget is not None
    assert budget.reset_s == pytest.approx(expected, abs=1e-6)


def test_leap_second_reset():
    """A leap second (23:59:60) is the moment after 23:59:59, not a parse error."""
    budget = requests_of(anthropic_requests("2016-12-31T23:59:60Z"))
    now = datetime(2016, 12, 31, 23, 59, 0, tzinfo=UTC).timestamp()
    assert budget is not None
    assert budget.reset_s == 0.0  # already past at NOW (2024)
    later = parse_rate_limit_headers(anthropic_requests("2016-12-31T23:59:60Z"), now_wall_s=now)
    assert later.requests == per_minute(None, 1, 60.0)


def anthropic_split(output_remaining: str) -> dict[str, str]:
    """Input and output token budgets only, as Anthropic sends them without a workspace limit."""
    return {
        "anthropic-ratelimit-input-tokens-limit": "30000",
        "anthropic-ratelimit-input-tokens-remaining": "29000",
        "anthropic-ratelimit-input-tokens-reset": "2024-05-01T12:00:02Z",
        "anthropic-ratelimit-output-tokens-limit": "8000",
        "anthropic-ratelimit-output-tokens-remaining": output_remaining,
        "anthropic-ratelimit-output-tokens-reset": "2024-05-01T12:00:59Z",
    }


def test_anthropic_input_tokens_are_not_held_back_by_the_output_figure():
    """29,000 of 30,000 input tokens left reads as that, however low the output budget is.

    The input and output budgets were once folded into one "tokens" budget (the tighter one),
    so a limiter of input tokens waited on the output figure: 1.2 s with 29,000 input tokens
    left. Each is now its own dimension, and nothing is made up for "tokens".
    """
    result = parse_rate_limit_headers(anthropic_split("100"), now_wall_s=NOW)
    assert result.budgets["input_tokens"] == tokens_k(30_000, 29_000, 2.0)
    assert result.budgets["output_tokens"] == tokens_k(8000, 100, 59.0)
    assert result.tokens is None
    assert set(result.budgets) == {"input_tokens", "output_tokens"}


@given(output_remaining=st.integers(0, 8000))
def test_the_input_budget_does_not_depend_on_the_output_budget(output_remaining):
    """Whatever the output budget says, the input budget reads the same."""
    headers = anthropic_split(str(output_remaining))
    result = parse_rate_limit_headers(headers, now_wall_s=NOW)
    assert result.budgets["input_tokens"] == tokens_k(30_000, 29_000, 2.0)


def test_anthropic_tokens_budget_stands_beside_input_and_output():
    """``anthropic-ratelimit-tokens-*`` (the most restrictive limit in effect) is "tokens"."""
    result = parse_rate_limit_headers(ANTHROPIC, now_wall_s=NOW)
    assert set(result.budgets) == {"requests", "tokens", "input_tokens", "output_tokens"}
    assert result.tokens is result.budgets["tokens"]
    assert result.requests is result.budgets["requests"]
    assert result.tokens == tokens_k(400_000, 398_000, 1.0)


def policy_period(policy: str) -> float | None:
    headers = {"RateLimit-Limit": "100", "RateLimit-Remaining": "5", "RateLimit-Policy": policy}
    budget = parse_rate_limit_headers(headers, now_wall_s=NOW).requests
    assert budget is not None
    return budget.period_s


@pytest.mark.parametrize(
    ("headers", "period"),
    [
        (OPENAI, 60.0),
        (ANTHROPIC, 60.0),
        (IETF_06, 60.0),
        (IETF_07, 60.0),
        (IETF_08, 86400.0),
        ({"RateLimit-Limit": "100, 100;window=3600", "RateLimit-Remaining": "5"}, 3600.0),
        ({"RateLimit-Limit": "100", "RateLimit-Remaining": "5"}, None),
        (GITHUB, None),
    ],
    ids=[
        "openai",
        "anthropic",
        "ietf-06",
        "ietf-07",
        "ietf-08",
        "ietf-01-window",
        "none",
        "github",
    ],
)
def test_period_each_budget_is_stated_over(headers, period):
    """Per minute for OpenAI and Anthropic, the policy's window for IETF, else not said."""
    budgets = parse_rate_limit_headers(headers, now_wall_s=NOW).budgets
    assert budgets
    assert {budget.period_s for budget in budgets.values()} == {period}


@pytest.mark.parametrize(
    ("policy", "period"),
    [
        ("100;w=60", 60.0),
        ("10;w=1, 100;w=60", 60.0),  # the policy whose quota is the limit
        ("50;w=60", None),  # no policy states this limit: no period
        ("100;w=0", None),
        ("100;w=-5", None),
        ("100;w=abc", None),
        ("100;w=1e3", None),
        (f"100;w={40 * 86_400}", None),  # past a month: no usable period
        ('"p";q=100;w=30', 30.0),
    ],
)
def test_ietf_policy_periods(policy, period):
    """An IETF budget's period is the window of the policy stating its limit, when sane."""
    assert policy_period(policy) == period


@pytest.mark.parametrize(
    ("headers", "granularity", "refills"),
    [
        (OPENAI, {"requests": 1.0, "tokens": 1.0}, True),
        (
            ANTHROPIC,
            {"requests": 1.0, "tokens": 1000.0, "input_tokens": 1000.0, "output_tokens": 1000.0},
            True,
        ),
        (IETF_08, {"requests": 1.0}, False),
        (GITHUB, {"requests": 1.0}, False),
    ],
    ids=["openai", "anthropic", "ietf", "x-ratelimit"],
)
def test_granularity_and_refill(headers, granularity, refills):
    """Anthropic rounds token budgets to a thousand; OpenAI and Anthropic refill continuously."""
    budgets = parse_rate_limit_headers(headers, now_wall_s=NOW).budgets
    assert {name: b.granularity for name, b in budgets.items()} == granularity
    assert {b.refills for b in budgets.values()} == {refills}


def ietf_units(*units: str) -> dict[str, str]:
    return {
        "RateLimit-Policy": ", ".join(
            f'"p{i}";q=1000;w=60;qu="{unit}"' for i, unit in enumerate(units)
        ),
        "RateLimit": ", ".join(f'"p{i}";r={900 - i};t=10' for i in range(len(units))),
    }


@pytest.mark.parametrize(
    ("units", "dimensions"),
    [
        (("input-tokens", "output-tokens"), {"input_tokens", "output_tokens"}),
        (("Input-Tokens",), {"input_tokens"}),
        (("requests", "tokens", "images"), {"requests", "tokens", "images"}),
        (("request", "token"), {"requests", "tokens"}),
        (("concurrent-requests",), set()),
        (("input tokens", "tökens", "a.b", "-x", "x" * 80, ""), {"requests"}),
    ],
    ids=["custom", "case", "registered-and-custom", "singular", "concurrency", "not-plain"],
)
def test_ietf_units_name_their_dimension(units, dimensions):
    """A plain-token unit is a dimension of its own ("-" read as "_"); concurrency is none."""
    budgets = parse_rate_limit_headers(ietf_units(*units), now_wall_s=NOW).budgets
    assert set(budgets) == dimensions


def test_ietf_custom_unit_keeps_the_most_restrictive_policy():
    """Two policies of one custom unit: the lower remaining wins, as for requests."""
    budgets = parse_rate_limit_headers(
        ietf_units("input-tokens", "input-tokens"), now_wall_s=NOW
    ).budgets
    assert budgets == {"input_tokens": Budget(1000, 899, 10.0, 60.0)}


def test_rate_limit_info_is_a_value():
    """Its budgets are read-only, it equals one built from a dict, and it hashes."""
    result = parse_rate_limit_headers(OPENAI, now_wall_s=NOW)
    assert result == RateLimitInfo(budgets=dict(result.budgets), source="openai")
    assert hash(result) == hash(RateLimitInfo(budgets=dict(result.budgets), source="openai"))
    with pytest.raises(TypeError):
        result.budgets["tokens"] = Budget(1, 1, 1)  # type: ignore[index]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("20ms", 0.02),
        ("6ms", 0.006),
        ("1h2m3.5s", 3723.5),
        ("0.5s", 0.5),
        ("12", 12.0),
        ("0", 0.0),
        ("0s", 0.0),
        ("1.5", 1.5),
        ("1m30s", 90.0),
        ("250us", 0.00025),
        ("250\u00b5s", 0.00025),
        ("250\u03bcs", 0.00025),
        ("500ns", 5e-7),
        (" 2s ", 2.0),
        ("5x", None),
        ("", None),
        ("s", None),
        ("1", 1.0),
        ("-1s", None),
        ("+1s", None),
        ("1h-2m", None),
        ("1 s", None),
        ("1e3s", None),
        ("nan", None),
        ("inf", None),
        ("1S", None),
        ("1s garbage", None),
        ("9" * 400 + "s", None),
    ],
)
def test_parse_duration(text, expected):
    """Go durations and bare seconds parse; signs, unknown units and garbage give None."""
    assert parse_duration_s(text) == expected


@given(
    hours=st.integers(0, 48),
    minutes=st.integers(0, 59),
    seconds=st.integers(0, 59),
    millis=st.integers(0, 999),
    show=st.lists(st.booleans(), min_size=4, max_size=4),
)
def test_duration_round_trip(hours, minutes, seconds, millis, show):
    """Any h/m/s/ms composition reads back as the seconds it spells, parts in any subset."""
    parts = [(hours, "h", 3600.0), (minutes, "m", 60.0), (seconds, "s", 1.0), (millis, "ms", 1e-3)]
    shown = [(n, unit, size) for (n, unit, size), on in zip(parts, show, strict=True) if on]
    if not shown:
        shown = [parts[2]]
    text = "".join(f"{n}{unit}" for n, unit, _ in shown)
    expected = sum(n * size for n, _, size in shown)
    result = parse_duration_s(text)
    assert result is not None
    assert math.isclose(result, expected, rel_tol=1e-12, abs_tol=1e-12)


@given(seconds=st.integers(0, 200_000), millis=st.integers(0, 999))
def test_go_fractional_seconds_round_trip(seconds, millis):
    """Go's own style, fractional seconds ("1h2m3.25s"), reads back to the millisecond."""
    hours, rest = divmod(seconds, 3600)
    minutes, whole = divmod(rest, 60)
    text = f"{hours}h{minutes}m{whole}.{millis:03d}s"
    result = parse_duration_s(text)
    assert result is not None
    assert math.isclose(result, seconds + millis / 1000, rel_tol=1e-12, abs_tol=1e-9)


KNOWN_NAMES = sorted(
    {*OPENAI, *ANTHROPIC, *ANTHROPIC_SPLIT, *GITHUB}
    | {n.lower() for n in (*IETF_06, *IETF_07, *IETF_08)}
)
plausible_values = st.one_of(
    st.text(),
    st.text(alphabet="0123456789.-+eE ,;=\"'hmsuµnxTZ:qrtw", max_size=40),
    st.integers(-(10**30), 10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(["1s", "6m0s", "20ms", "2024-05-01T12:00:30Z", '"a";r=1;t=2', "limit=1"]),
    st.sampled_from(['"a";q=5;w=60;qu="input-tokens"', "10;w=0", "10;window=9e9", '"a";qu=""']),
)
header_maps = st.dictionaries(
    st.one_of(st.sampled_from(KNOWN_NAMES), st.text()), plausible_values, max_size=12
)
wall_times = st.floats(0.0, 4e9)


def all_numbers(result: RateLimitInfo) -> Iterator[float]:
    for budget in result.budgets.values():
        figures = (budget.limit, budget.remaining, budget.reset_s, budget.period_s)
        yield from (v for v in figures if v is not None)
        yield budget.granularity


def assert_sane(result: RateLimitInfo) -> None:
    """Every number finite and >= 0, periods positive, dimensions plain names."""
    assert result.source in {"openai", "anthropic", "ietf", "x-ratelimit", "none"}
    assert (result.source == "none") == (not result.budgets)
    assert result.requests is result.budgets.get("requests")
    assert result.tokens is result.budgets.get("tokens")
    for value in all_numbers(result):
        assert math.isfinite(value)
        assert value >= 0.0
    for name, budget in result.budgets.items():
        assert re.fullmatch(r"[a-z][a-z0-9_]*", name), name
        assert budget.period_s is None or 0.0 < budget.period_s <= ratelimit_formats.MAX_RESET_S
        assert budget.granularity >= 1.0
        assert budget.refills == (result.source in {"openai", "anthropic"})


@given(headers=header_maps, now=wall_times)
def test_never_raises_and_numbers_are_sane(headers, now):
    """For any header values the parser returns, and every number it gives is finite and >= 0."""
    assert_sane(parse_rate_limit_headers(headers, now_wall_s=now))


ietf_params = st.lists(
    st.tuples(st.sampled_from(["q", "w", "qu", "window", "r", "t"]), plausible_values),
    max_size=5,
)


@given(
    policies=st.lists(st.tuples(st.sampled_from(["a", "b", ""]), ietf_params), max_size=4),
    combined=st.lists(st.tuples(st.sampled_from(["a", "b", ""]), ietf_params), max_size=4),
    now=wall_times,
)
def test_ietf_structured_never_raises(policies, combined, now):
    """Any IETF policies and budgets, with any units and windows, read sanely or not at all."""

    def field(items: list[tuple[str, list[tuple[str, str]]]]) -> str:
        return ", ".join(
            f'"{name}"' + "".join(f";{key}={value}" for key, value in params)
            for name, params in items
        )

    headers = {"RateLimit-Policy": field(policies), "RateLimit": field(combined)}
    assert_sane(parse_rate_limit_headers(headers, now_wall_s=now))


@given(headers=header_maps, now=wall_times, data=st.data())
def test_names_are_case_insensitive(headers, now, data):
    """Re-casing header names never changes what is read."""
    recased = {
        "".join(c.upper() if data.draw(st.booleans()) else c for c in name): value
        for name, value in headers.items()
    }
    if len({name.lower() for name in recased}) == len(headers):  # no collisions made
        assert parse_rate_limit_headers(recased, now_wall_s=now) == parse_rate_limit_headers(
            headers, now_wall_s=now
        )


@given(
    policies=st.lists(
        st.tuples(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 3600)),
        min_size=1,
        max_size=6,
    )
)
def test_ietf_most_restrictive_policy_wins(policies):
    """Among several IETF policies the one with the lowest remaining is read; the first if tied."""
    headers = {
        "RateLimit-Policy": ", ".join(f'"p{i}";q={q};w=60' for i, (q, _, _) in enumerate(policies)),
        "RateLimit": ", ".join(f'"p{i}";r={r};t={t}' for i, (_, r, t) in enumerate(policies)),
    }
    lowest = min(r for _, r, _ in policies)
    q, r, t = next(p for p in policies if p[1] == lowest)
    assert requests_of(headers) == Budget(q, r, t)


@given(remaining=st.integers(-(10**9), 10**9))
def test_remaining_is_clamped_at_zero(remaining):
    """A remaining count below zero (an overdrawn budget) reads as 0, anything else as given."""
    budget = requests_of(openai_requests(remaining=str(remaining)))
    assert budget is not None
    assert budget.remaining == max(remaining, 0)


@given(delta=st.integers(0, 30 * 86_400), now=st.integers(1_000_000_001, 3_000_000_000))
def test_epoch_and_delta_resets_agree(delta, now):
    """An X-RateLimit reset as a Unix time (> 1e9) and as delta seconds read the same."""
    as_epoch = {"x-ratelimit-remaining": "1", "x-ratelimit-reset": str(now + delta)}
    as_delta = {"x-ratelimit-remaining": "1", "x-ratelimit-reset": str(delta)}
    epoch = parse_rate_limit_headers(as_epoch, now_wall_s=now).requests
    assert epoch == parse_rate_limit_headers(as_delta, now_wall_s=now).requests
    assert epoch == Budget(None, 1, delta)


@pytest.mark.parametrize("module", [ratelimit_headers, ratelimit_formats])
def test_docstring_examples(module):
    """The examples in the module docstrings run and hold."""
    assert doctest.testmod(module).failed == 0
