"""The result line, error codes, the answer as kept, and redaction: pure, tested exactly."""

import json
from base64 import b64encode, urlsafe_b64encode
from urllib.parse import quote, quote_plus

import pytest

from conveyor import AttemptTimeout, CircuitOpen, ConfigError, Outcome
from conveyor.http import HTTPStatusError, InvalidLine, Request, Response, TransportError
from conveyor.http.redact import REDACTED, Redactor
from conveyor.http.response import decode_body, kept_headers
from conveyor.http.results import error_fields, invalid_result, outcome_result, result_line

REQUEST = Request(
    line=3, custom_id="req-1", method="POST", url="http://h/x", body=b"{}", headers=(), cost=1.0
)


def test_a_success_line_has_exactly_the_documented_fields():
    """A success is one JSON object: custom_id, null error, response (status, headers, body)."""
    response = Response(200, {"content-type": "application/json"}, {"ok": True})
    outcome: Outcome[Request, Response] = Outcome(
        0, REQUEST, "succeeded", response, None, 2, 0.0125, 0.5
    )
    text = outcome_result(outcome, last_failure=None)
    assert text == (
        '{"custom_id":"req-1","error":null,"response":{"status_code":200,"headers":'
        '{"content-type":"application/json"},"body":{"ok":true}},"attempts":2,"latency_ms":12.5}'
    )
    assert "\n" not in text


def test_an_http_failure_keeps_the_answer_and_names_the_status():
    """A non-2xx failure keeps the API's answer in response and says http_<status> in error."""
    answer = Response(400, {}, {"error": {"message": "Bad model."}})
    error = HTTPStatusError(answer, {"x": "y"})
    outcome: Outcome[Request, Response] = Outcome(
        0, REQUEST, "failed", None, error, 1, 0.002, 0.002
    )
    record = json.loads(outcome_result(outcome, last_failure=None))
    assert record["response"] == {"status_code": 400, "headers": {}, "body": answer.body}
    assert record["error"] == {"code": "http_400", "message": "HTTP 400: Bad model."}
    assert (record["attempts"], record["latency_ms"]) == (1, 2.0)


def test_a_request_never_sent_has_no_latency():
    """A request refused before sending (open circuit) has a null latency and the last reason."""
    error = CircuitOpen("api", 10.0)
    outcome: Outcome[Request, Response] = Outcome(0, REQUEST, "failed", None, error, 3, 0.0, 1.0)
    record = json.loads(outcome_result(outcome, last_failure="Cannot connect to host h:1"))
    assert record["response"] is None
    assert record["latency_ms"] is None
    assert record["error"]["code"] == "circuit_open"
    assert record["error"]["message"].endswith("; the last failure: Cannot connect to host h:1")


@pytest.mark.parametrize(
    ("error", "code", "message"),
    [
        (TransportError("ClientConnectorError: refused"), "connection_error", "refused"),
        (AttemptTimeout(2.0), "timeout", "2"),
        (
            ConfigError("api: a call costing 900 tokens can never be admitted"),
            "cost_too_large",
            "not sent: api: a call costing 900",
        ),
        (ValueError("odd"), "error", "ValueError: odd"),
    ],
)
def test_error_codes(error, code, message):
    """Each kind of failure has its documented code and a message with the reason."""
    got_code, got_message = error_fields(error)
    assert got_code == code
    assert message in got_message


def test_an_invalid_line_result():
    """A line that could not be sent is a failed result with code invalid_line and no attempt."""
    text = invalid_result(InvalidLine(line=17, custom_id="line-17", message="line 17 is bad"))
    assert json.loads(text) == {
        "custom_id": "line-17",
        "response": None,
        "error": {"code": "invalid_line", "message": "line 17 is bad"},
        "attempts": 0,
        "latency_ms": None,
    }


def test_text_stays_readable_and_on_one_line():
    """Non-ASCII text is written as is; newlines inside values are escaped."""
    text = result_line(
        "ü\n", response=Response(200, {}, "a\nb ✓"), error=None, attempts=1, latency_s=0
    )
    assert "\n" not in text
    assert "ü" in text
    assert "✓" in text


@pytest.mark.parametrize(
    ("data", "content_type", "expected"),
    [
        (b'{"a": [1, 2]}', "application/json; charset=utf-8", {"a": [1, 2]}),
        (b"<html>502 Bad Gateway</html>", "text/html", "<html>502 Bad Gateway</html>"),
        (b"<html>oops</html>", "application/json", "<html>oops</html>"),
        (b"\xff ok", None, "\ufffd ok"),
        (b"", "application/json", ""),
    ],
)
def test_bodies_are_json_when_they_say_so_and_parse_else_text(data, content_type, expected):
    """A body is parsed JSON when labelled JSON and valid; otherwise its text is kept."""
    assert decode_body(data, content_type) == expected


def test_only_the_documented_headers_are_kept():
    """Rate-limit, retry-after, content-type and request-id headers are kept, nothing else."""
    headers = [
        ("Content-Type", "application/json"),
        ("X-Request-Id", "abc"),
        ("Retry-After", "2"),
        ("retry-after-ms", "1500"),
        ("X-RateLimit-Remaining-Tokens", "10"),
        ("Set-Cookie", "session=secret"),
        ("Authorization", "Bearer x"),
    ]
    assert kept_headers(headers) == {
        "content-type": "application/json",
        "x-request-id": "abc",
        "retry-after": "2",
        "retry-after-ms": "1500",
        "x-ratelimit-remaining-tokens": "10",
    }


def test_anthropics_request_id_and_rate_limit_headers_are_kept():
    """Claude's answers: request-id and anthropic-ratelimit-* are kept like OpenAI's."""
    headers = [
        ("request-id", "req_011"),
        ("anthropic-ratelimit-input-tokens-remaining", "49000"),
        ("anthropic-organization-id", "org-1"),
    ]
    assert kept_headers(headers) == {
        "request-id": "req_011",
        "anthropic-ratelimit-input-tokens-remaining": "49000",
    }


def test_error_text_of_long_or_odd_bodies():
    """The error message of an answer is the API's message, or its body, cut and on one line."""
    assert Response(500, {}, "x" * 300).error_text() == "x" * 200 + "..."
    assert Response(500, {}, "line one\nline two").error_text() == "line one line two"
    assert Response(500, {}, "").error_text() == "(empty body)"
    assert Response(500, {}, {"error": "boom"}).error_text() == "boom"
    assert Response(500, {}, [1]).error_text() == "[1]"


def test_redaction_replaces_secrets_and_their_token_and_json_forms():
    """A secret, its token without the scheme, and its JSON-escaped form are all redacted."""
    redact = Redactor(['Bearer sk-"quoted"-123'])
    assert redact('auth: Bearer sk-"quoted"-123') == f"auth: {REDACTED}"
    assert redact('{"echo":"sk-\\"quoted\\"-123"}') == f'{{"echo":"{REDACTED}"}}'
    assert redact("nothing here") == "nothing here"


def test_short_values_are_not_redacted_but_counted():
    """Values under 8 characters would mangle text: they are left alone and counted."""
    redact = Redactor(["abc"])
    assert not redact
    assert redact.too_short == 1
    assert redact("abc") == "abc"


def test_an_apis_own_error_message_is_redacted_and_cut_like_any_body():
    """OpenAI's error.message echoing a secret is redacted, and a long one is cut short."""
    secret = "sk-test-0123456789abcdef"  # noqa: S105 - a made-up test value
    body = {"error": {"message": f"Incorrect API key provided: {secret}. " + "y" * 300}}
    text = Response(401, {}, body).error_text(lambda t: t.replace(secret, "[redacted]"))
    assert secret not in text
    assert text.startswith("Incorrect API key provided: [redacted].")
    assert text.endswith("...")
    assert len(text) == 203


@pytest.mark.parametrize(
    "spelling",
    [
        pytest.param(lambda s: quote(s, safe=""), id="percent-encoded"),
        pytest.param(lambda s: quote(s, safe="").lower(), id="percent-encoded-lower-hex"),
        pytest.param(lambda s: quote_plus(f"Bearer {s}"), id="form-encoded-with-scheme"),
        pytest.param(lambda s: "".join(f"\\u{ord(c):04x}" for c in s), id="json-escaped-all"),
        pytest.param(lambda s: "\\u0073" + s[1:].replace("/", "\\/"), id="json-escaped-some"),
        pytest.param(lambda s: "%73" + s[1:5] + "\\u002F" + s[6:], id="mixed"),
        pytest.param(lambda s: b64encode(s.encode()).decode(), id="base64"),
        pytest.param(lambda s: b64encode(f"Bearer {s}".encode()).decode(), id="base64-scheme"),
        pytest.param(lambda s: b64encode(f"u:{s}".encode()).decode(), id="base64-offset-2"),
        pytest.param(lambda s: b64encode(f"xy:{s}".encode()).decode(), id="base64-offset-3"),
        pytest.param(lambda s: b64encode(f"{s}!".encode()).decode(), id="base64-followed"),
        pytest.param(lambda s: urlsafe_b64encode(f"k={s}".encode()).decode(), id="base64-url"),
    ],
)
def test_an_echoed_secret_spelled_another_way_is_redacted(spelling):
    """Percent-, form-, JSON-escaped or base64 at any offset, an echoed key is still redacted."""
    secret = "sk-te/st+0123456789abcdef"  # noqa: S105 - a made-up test value
    redact = Redactor([f"Bearer {secret}"])
    echoed = spelling(secret)
    assert echoed != secret
    text = redact(f"<p>you sent {echoed}</p>")
    assert echoed not in text
    assert REDACTED in text
    assert redact.value({"k": [f"x{echoed}y"]})["k"][0] != f"x{echoed}y"


def test_encoded_spellings_leave_ordinary_text_alone():
    """Text with escapes and percent signs but no secret comes back as it was."""
    redact = Redactor(["Bearer sk-te/st+0123456789abcdef"])
    text = 'a 100% \\u0041 "c2stdGUv" sk-te%2Fst \\n done'
    assert redact(text) == text


def test_a_basic_credential_echoed_decoded_is_redacted():
    """A Basic header's user:password, and the password alone, echoed in clear: redacted."""
    token = b64encode(b"alice:pa55word-xyz").decode()
    redact = Redactor([f"Basic {token}"])
    text = redact("login alice:pa55word-xyz failed; password pa55word-xyz is wrong")
    assert text == f"login {REDACTED} failed; password {REDACTED} is wrong"
    assert redact(f"sent {token}") == f"sent {REDACTED}"
