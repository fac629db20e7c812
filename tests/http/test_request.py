"""The request line format: a table of good lines, bare bodies and bad lines; token estimates."""

import json

import pytest

from conveyor.http import InputError, InvalidLine, Request, estimate_tokens, parse_line
from conveyor.http.request import join_url

BASE = "https://api.example.com"
CHAT = {"model": "m", "messages": [{"role": "user", "content": "12345678"}]}


def line(obj: object) -> bytes:
    return (json.dumps(obj) + "\n").encode()


def parse(
    raw: bytes, number: int = 7, *, base_url: str = BASE, default_url: str | None = None
) -> Request | InvalidLine | None:
    return parse_line(raw, number, base_url=base_url, default_url=default_url)


def test_a_batch_api_line_becomes_a_request():
    """An OpenAI Batch line gives its id, method, absolute url, compact body and estimate."""
    raw = line({"custom_id": "a", "method": "post", "url": "/v1/chat/completions", "body": CHAT})
    request = parse(raw)
    assert request == Request(
        line=7,
        custom_id="a",
        method="POST",
        url=f"{BASE}/v1/chat/completions",
        body=json.dumps(CHAT, separators=(",", ":")).encode(),
        headers=(),
        cost=2 + 16,
        named_by_line=False,
        output_tokens=16,
        api="chat",
        model="m",
        most_tokens=(2, 16),
    )


@pytest.mark.parametrize(
    ("obj", "field", "expected"),
    [
        ({"custom_id": "a", "url": "/x", "body": {}}, "method", "POST"),
        ({"custom_id": "a", "url": "/x", "body": {}, "cost": 99}, "cost", 99.0),
        (
            {"custom_id": "a", "url": "/x", "body": {}, "headers": {"X-A": "1"}},
            "headers",
            (("X-A", "1"),),
        ),
        ({"custom_id": "a", "url": f"{BASE}/v1/x", "body": {}}, "url", f"{BASE}/v1/x"),
        ({"custom_id": "a", "url": "v1/x", "body": {}}, "url", f"{BASE}/v1/x"),
        ({"custom_id": "a", "method": "GET", "url": "/x", "body": None}, "body", None),
        ({"url": "/x", "body": {}}, "custom_id", "line-7"),
        ({"url": "/x", "body": {}}, "named_by_line", True),
    ],
)
def test_optional_fields_and_defaults(obj, field, expected):
    """Method defaults to POST, cost replaces the estimate, headers and urls kept, ids default."""
    request = parse(line(obj))
    assert isinstance(request, Request)
    assert getattr(request, field) == expected


def test_a_bare_body_goes_to_the_default_url():
    """With --url, a line that is not a Batch request is a bare body sent to that url."""
    request = parse(line(CHAT), default_url="/v1/chat/completions")
    assert isinstance(request, Request)
    assert (request.custom_id, request.url, request.named_by_line) == (
        "line-7",
        f"{BASE}/v1/chat/completions",
        True,
    )
    assert json.loads(request.body or b"") == CHAT


def test_a_body_with_its_own_body_field_is_bare_when_other_fields_are_foreign():
    """An object with a "body" key plus keys outside the Batch format is a bare body."""
    email = {"to": "a@b.c", "body": "hello"}
    request = parse(line(email), default_url="/v1/send")
    assert isinstance(request, Request)
    assert json.loads(request.body or b"") == email


def test_blank_lines_are_skipped():
    """Blank and whitespace-only lines are no requests."""
    assert parse(b"\n") is None
    assert parse(b"   \r\n") is None


@pytest.mark.parametrize(
    ("raw", "custom_id", "message"),
    [
        (
            b'{"custom_id": "a", "body": \n',
            "line-7",
            "line 7 is not valid JSON: it ends too early",
        ),
        (b'{"custom_id": "a",, "body": 1}\n', "line-7", "keys must be strings at byte 18"),
        (
            b'{"custom_id": "a", "url": "/x", "body": {"n": 1e400}}\n',
            "line-7",
            "not valid JSON: a number is too large for a float",
        ),
        (b"[1, 2]\n", "line-7", "line 7 is a JSON array, not an object"),
        (b'"hello"\n', "line-7", "line 7 is a JSON string, not an object"),
        (b"null\n", "line-7", "line 7 is JSON null, not an object"),
        (b"42\n", "line-7", "line 7 is a JSON number, not an object"),
        (b"\xff\xfe\n", "line-7", "line 7 is not UTF-8 text"),
        (
            b'{"custom_id": "a", "url": "/x", "body": NaN}\n',
            "line-7",
            "line 7 is not valid JSON: NaN at column 41 is not a JSON number",
        ),
        (
            b'{"custom_id": "a", "url": "/x", "body": [-Infinity]}\n',
            "line-7",
            "line 7 is not valid JSON: -Infinity at column 42 is not a JSON number",
        ),
        (
            b'{"custom_id": "a", "url": "/x", "body": "\\ud800"}\n',
            "line-7",
            "line 7 is not valid JSON: a lone surrogate \\ud800 at column 42 is not valid Unicode",
        ),
        (
            b'{"custom_id": "a", "url": "/x", "body": "\\udc00x"}\n',
            "line-7",
            "line 7 is not valid JSON: a lone surrogate \\udc00 at column 42 is not valid Unicode",
        ),
        (b"[" * 100_000 + b"\n", "line-7", "line 7 nests arrays and objects more than 128 deep"),
        (
            b'{"custom_id": "a", "url": "/x", "body": ' + b"[" * 200 + b"]" * 200 + b"}\n",
            "line-7",
            "line 7 nests arrays and objects more than 128 deep",
        ),
        (line({"custom_id": "a", "model": "m"}), "a", "line 7 is not a request"),
        (line({"custom_id": 5, "url": "/x", "body": {}}), "line-7", "custom_id 5:"),
        (line({"custom_id": "", "url": "/x", "body": {}}), "line-7", "non-empty string"),
        (line({"custom_id": "a", "method": "BREW", "url": "/x", "body": {}}), "a", "'BREW'"),
        (line({"custom_id": "a", "body": {}}), "a", 'has no "url"'),
        (line({"custom_id": "a", "url": "/x", "body": {}, "headers": ["x"]}), "a", '"headers"'),
        (line({"custom_id": "a", "url": "/x", "body": {}, "cost": -1}), "a", '"cost" -1'),
        (line({"custom_id": "a", "url": "/x", "body": {}, "cost": True}), "a", '"cost" True'),
        (line({"custom_id": "a", "url": "/x", "body": {}, "cost": 10**400}), "a", '"cost" 1000'),
        (
            line({"custom_id": "a", "url": "/x", "body": {}, "headers": {"X-A": "1\r\nX-B: 2"}}),
            "a",
            "line break",
        ),
        (
            line({"custom_id": "a", "url": "/x", "body": {}, "headers": {"X A": "1"}}),
            "a",
            "header name 'X A'",
        ),
        (
            line({"custom_id": "a", "url": "https://evil.example/x", "body": {}}),
            "a",
            "outside --base-url",
        ),
    ],
)
def test_bad_lines_become_invalid_lines_naming_the_line(raw, custom_id, message):
    """A bad line is not raised: it becomes an InvalidLine with its id (or line-N) and reason."""
    invalid = parse(raw)
    assert isinstance(invalid, InvalidLine)
    assert invalid.custom_id == custom_id
    assert invalid.line == 7
    assert message in invalid.message


def test_a_bare_body_without_url_says_to_pass_url():
    """Without --url, a bare body is refused with the hint to pass --url."""
    invalid = parse(line(CHAT))
    assert isinstance(invalid, InvalidLine)
    assert "pass --url PATH" in invalid.message


def test_a_relative_url_without_base_url_is_refused_for_the_whole_run():
    """A relative url with no base URL raises InputError naming the line and --base-url."""
    with pytest.raises(InputError, match=r"line 3: the url '/v1/x' is relative .* --base-url"):
        parse_line(line({"url": "/v1/x", "body": {}}), 3)


def test_absolute_urls_are_allowed_without_base_url():
    """Without --base-url, a line's absolute url is used as it is."""
    request = parse_line(line({"url": "http://127.0.0.1:1/x", "body": {}}), 1)
    assert isinstance(request, Request)
    assert request.url == "http://127.0.0.1:1/x"


@pytest.mark.parametrize(
    ("url", "base", "expected"),
    [
        ("/v1/x", "https://h", "https://h/v1/x"),
        ("/v1/x", "https://h/", "https://h/v1/x"),
        ("v1/x", "https://h/api", "https://h/api/v1/x"),
        ("https://h/api/v1", "https://h/api", "https://h/api/v1"),
        ("https://h/apiv1", "https://h/api", None),
        ("https://other/v1", "https://h", None),
        # The OpenAI SDK's base URL ends in /v1, as batch files' urls begin: not doubled.
        ("/v1/chat/completions", "https://h/v1", "https://h/v1/chat/completions"),
        ("/v1/chat/completions", "https://h/v1/", "https://h/v1/chat/completions"),
        ("/v2/x", "https://h/v1", "https://h/v1/v2/x"),
        ("/v1x/y", "https://h/v1", "https://h/v1/v1x/y"),
    ],
)
def test_join_url(url, base, expected):
    """Relative urls join the base (its path not repeated); absolute ones must be under it."""
    assert join_url(url, base, line=1) == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"messages": [{"role": "user", "content": "12345678"}]}, 2 + 16),
        ({"messages": [{"role": "user", "content": "123456789"}], "max_tokens": 100}, 3 + 100),
        ({"messages": [], "max_completion_tokens": 7, "max_tokens": 100}, 7),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "text", "text": "1234"}, {"type": "image_url"}],
                    }
                ]
            },
            1 + 16,
        ),
        (
            {"messages": [{"role": "a", "content": "1234"}, {"role": "b", "content": "12345"}]},
            3 + 16,
        ),
        ({"messages": [{"role": "user", "content": None}], "max_tokens": 0}, 0),
    ],
)
def test_chat_estimate_is_prompt_chars_over_4_plus_max_tokens(body, expected):
    """Chat bodies cost ceil(content characters / 4) plus max_(completion_)tokens, 16 by default."""
    assert estimate_tokens(body, None) == expected


def test_other_bodies_cost_their_json_length_over_4():
    """Any other body costs ceil(len(JSON sent) / 4)."""
    request = parse(line({"custom_id": "a", "url": "/x", "body": {"text": "hello"}}))
    assert isinstance(request, Request)
    assert request.body == b'{"text":"hello"}'
    assert request.cost == 4  # 16 bytes


def test_the_estimate_matches_what_the_mock_api_charges():
    """The estimate is the mock API's charge, so a client limiter and the mock agree exactly."""
    from conveyor.mockapi.protocol import parse_chat

    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "x" * 37}, {"role": "user", "content": "yz"}],
        "max_tokens": 9,
    }
    encoded = json.dumps(body).encode()
    assert estimate_tokens(body, encoded) == parse_chat(encoded).cost


def test_big_integers_in_a_body_are_sent_exactly():
    """An integer past 64 bits is re-encoded digit for digit, not rounded through a float."""
    request = parse(line({"custom_id": "a", "url": "/x", "body": {"n": 10**30 + 1}}))
    assert isinstance(request, Request)
    assert request.body == b'{"n":1000000000000000000000000000001}'


def test_a_max_tokens_too_big_for_a_float_fails_its_line_instead_of_raising():
    """A max_tokens past the float range fails that line (a huge estimate is not a crash)."""
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 10**400}
    invalid = parse(line({"custom_id": "a", "url": "/x", "body": body}))
    assert isinstance(invalid, InvalidLine)
    assert (invalid.custom_id, invalid.line) == ("a", 7)
    assert "max_tokens" in invalid.message


def test_a_utf8_bom_before_the_first_line_is_ignored():
    """A file saved with a UTF-8 byte order mark still reads its first line as a request."""
    request = parse(b"\xef\xbb\xbf" + line({"custom_id": "a", "url": "/x", "body": {}}), 1)
    assert isinstance(request, Request)
    assert request.custom_id == "a"


ROUTING = [
    "Host",
    "host",
    "HOST",
    "Forwarded",
    "X-Forwarded",
    "X-Forwarded-For",
    "x-forwarded-host",
    "X-Forwarded-Proto",
    "X-Forwarded-Prefix",
    "X-Real-IP",
    "X-Original-URL",
    "X-Rewrite-URL",
    "Connection",
    "Keep-Alive",
    "Transfer-Encoding",
    "TE",
    "Trailer",
    "Upgrade",
    "Content-Length",
    "Proxy-Authorization",
    "Proxy-Connection",
    "True-Client-IP",
]


@pytest.mark.parametrize("name", ROUTING)
def test_a_line_may_not_set_a_header_that_picks_where_its_request_lands(name):
    """Host, Forwarded, X-Forwarded-*, hop-by-hop and framing headers fail the line, any case."""
    raw = line({"custom_id": "a", "url": "/x", "body": {}, "headers": {"X-Ok": "1", name: "v"}})
    result = parse(raw)
    assert isinstance(result, InvalidLine)
    assert result.message.startswith(f"line 7 has the header {name}: a request may not choose")
    assert "remove it" in result.message


def test_a_refused_header_name_is_refused_again_on_every_line():
    """The names cache never lets a refused name through on a later line."""
    raw = line({"custom_id": "a", "url": "/x", "body": {}, "headers": {"Host": "internal"}})
    assert isinstance(parse(raw), InvalidLine)
    assert isinstance(parse(raw, 8), InvalidLine)


@pytest.mark.parametrize("name", ["OpenAI-Beta", "Idempotency-Key", "X-Team", "Authorization"])
def test_ordinary_headers_are_kept(name):
    """Headers that do not route are sent as given (credentials too: the run's own file)."""
    raw = line({"custom_id": "a", "url": "/x", "body": {}, "headers": {name: "v"}})
    result = parse(raw)
    assert isinstance(result, Request)
    assert result.headers == ((name, "v"),)
