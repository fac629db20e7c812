"""Reading retry-after hints from exceptions and header values, purely."""

from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from conveyor import RetryAfter
from conveyor.policy.retry_after import http_status_of, parse_retry_after, retry_after_s

NOW = 1_700_000_000.0


class _Response:
    def __init__(self, status_code: int, headers: dict[str, str]) -> None:
        self.status_code = status_code
        self.headers = headers


class HTTPStatusError(Exception):
    """Shaped like httpx's and openai's errors: the response hangs off the exception."""

    def __init__(self, status: int, headers: dict[str, str]) -> None:
        super().__init__(f"HTTP {status}")
        self.response = _Response(status, headers)


class ClientResponseError(Exception):
    """Shaped like aiohttp's: status and headers on the exception itself."""

    def __init__(self, status: int, headers: dict[str, str]) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.headers = headers


HTTP_DATE_10S = format_datetime(datetime.fromtimestamp(NOW + 10, tz=UTC), usegmt=True)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2", 2.0),
        (" 0 ", 0.0),
        ("1.5", 1.5),
        (HTTP_DATE_10S, 10.0),
        ("Thu, 01 Jan 1970 00:00:00 GMT", 0.0),  # a date in the past means "now"
        ("999999999", 86_400.0),  # absurd hints are capped at a day
        ("-1", None),
        ("nan", None),
        ("inf", None),
        ("", None),
        ("soon", None),
        ("Mon, 99 Foo 2024 25:61:61 GMT", None),
    ],
)
def test_header_values(value, expected):
    """Seconds and HTTP-dates parse; malformed values give None, never an exception."""
    assert parse_retry_after(value, now_wall_s=NOW) == expected


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (RetryAfter(3), 3.0),
        (HTTPStatusError(429, {"retry-after": "7"}), 7.0),
        (HTTPStatusError(429, {"Retry-After": "7"}), 7.0),  # a plain dict, other case
        (HTTPStatusError(429, {"retry-after-ms": "250", "retry-after": "7"}), 0.25),
        (HTTPStatusError(429, {"retry-after-ms": "junk", "retry-after": "7"}), 7.0),
        (ClientResponseError(503, {"Retry-After": HTTP_DATE_10S}), 10.0),
        (HTTPStatusError(500, {}), None),
        (ValueError("no hint here"), None),
    ],
)
def test_hints_from_exceptions(exc, expected):
    """Hints are found on RetryAfter, on exc.headers and on exc.response.headers."""
    assert retry_after_s(exc, now_wall_s=NOW) == expected


def test_retry_after_attribute_is_a_hint():
    """An exception with a numeric retry_after attribute is understood as seconds."""
    exc = Exception("busy")
    exc.retry_after = 4  # type: ignore[attr-defined]
    assert retry_after_s(exc, now_wall_s=NOW) == 4.0


def test_broken_header_mapping_is_ignored():
    """A headers object that raises on access gives no hint instead of crashing the run."""

    class Exploding:
        def get(self, name: str) -> str:
            raise RuntimeError(name)

    exc = Exception("x")
    exc.headers = Exploding()  # type: ignore[attr-defined]
    assert retry_after_s(exc, now_wall_s=NOW) is None


@pytest.mark.parametrize("seconds", [-1, float("inf"), float("nan")])
def test_retry_after_rejects_impossible_seconds(seconds):
    """RetryAfter(-1) or an infinite wait is a bug in the caller, named at construction."""
    with pytest.raises(ValueError, match="seconds must be a finite number >= 0"):
        RetryAfter(seconds)


def test_retry_after_from_code_is_capped_like_headers():
    """RetryAfter(1e9) asks for more than a day: capped at a day, as header hints are."""
    assert retry_after_s(RetryAfter(1e9), now_wall_s=NOW) == 86_400.0


def test_http_status_is_read_from_either_place():
    """The status is found on the exception (aiohttp) or on its response (httpx)."""
    assert http_status_of(HTTPStatusError(503, {})) == 503
    assert http_status_of(ClientResponseError(429, {})) == 429
    assert http_status_of(ValueError()) is None
