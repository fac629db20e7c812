"""Claude's Messages lines: both line formats, the checks before sending, the URL's API."""

import json
import re

import pytest

from conveyor.http import InputError, InvalidLine, Request, parse_line
from conveyor.http.apis import api_of

BASE = "https://api.anthropic.com"
PARAMS = {
    "model": "claude-haiku-4-5",
    "max_tokens": 64,
    "system": "s" * 40,
    "messages": [{"role": "user", "content": "u" * 80}],
}


def parse(obj: object, *, base_url: str | None = BASE) -> Request | InvalidLine | None:
    return parse_line((json.dumps(obj) + "\n").encode(), 3, base_url=base_url)


def test_anthropics_batch_line_is_a_post_of_its_params_to_messages():
    """{"custom_id", "params"} is POST /v1/messages with params as the body."""
    request = parse({"custom_id": "a", "params": PARAMS})
    assert isinstance(request, Request)
    assert (request.custom_id, request.method, request.url) == ("a", "POST", f"{BASE}/v1/messages")
    assert json.loads(request.body or b"") == PARAMS
    assert request.api == "messages"
    # 40 system + 80 message characters = 30 tokens, and max_tokens 64 for the answer.
    assert (request.cost, request.output_tokens) == (94.0, 64.0)


def test_a_batch_format_line_to_messages_is_the_same_request():
    """The OpenAI Batch format with url /v1/messages gives the very same request."""
    ours = parse({"custom_id": "a", "method": "POST", "url": "/v1/messages", "body": PARAMS})
    theirs = parse({"custom_id": "a", "params": PARAMS})
    assert ours == theirs


def test_a_params_line_keeps_its_own_headers_and_cost():
    """Headers and cost, our additions to each format, work on a params line too."""
    request = parse(
        {"custom_id": "a", "params": PARAMS, "headers": {"anthropic-beta": "x"}, "cost": 500}
    )
    assert isinstance(request, Request)
    assert request.headers == (("anthropic-beta", "x"),)
    assert (request.cost, request.cost_given, request.output_tokens) == (500.0, True, 64.0)


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        (
            {"custom_id": "a", "params": "hello"},
            'line 3 has "params" that are not a JSON object: give the Messages request',
        ),
        (
            {"custom_id": "a", "params": PARAMS, "body": PARAMS},
            'line 3 has both "params" and "body": a line is one of',
        ),
        (
            {"custom_id": "a", "params": PARAMS, "model": "x"},
            'line 3 has the field(s) "model", which no request line has',
        ),
        (
            {"custom_id": "a", "params": {k: v for k, v in PARAMS.items() if k != "max_tokens"}},
            'line 3 has a Messages body without "max_tokens", which Claude requires',
        ),
        (
            {"custom_id": "a", "params": {**PARAMS, "max_tokens": "64"}},
            "line 3 has a Messages body with '64' as \"max_tokens\"",
        ),
        (
            {"custom_id": "a", "params": {**PARAMS, "model": ""}},
            'line 3 has a Messages body without "model": name the Claude model',
        ),
        (
            {"custom_id": "a", "params": {**PARAMS, "messages": []}},
            'line 3 has a Messages body without "messages": give a non-empty list',
        ),
        (
            {"custom_id": "a", "url": "/v1/messages", "body": ["not", "an", "object"]},
            "line 3 has a Messages body that is not a JSON object",
        ),
    ],
)
def test_a_bad_messages_line_fails_alone_naming_the_fix(obj, message):
    """Each mistake is an invalid line (not sent), saying what is wrong and how to fix it."""
    invalid = parse(obj)
    assert isinstance(invalid, InvalidLine)
    assert invalid.custom_id == "a"
    assert invalid.message.startswith(message)


def test_token_counting_and_other_anthropic_routes_are_not_checked_as_messages():
    """/v1/messages/count_tokens has no max_tokens; it is Anthropic's, but not a Messages call."""
    body = {"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "hi"}]}
    request = parse({"custom_id": "a", "url": "/v1/messages/count_tokens", "body": body})
    assert isinstance(request, Request)
    assert request.api == "anthropic"


def test_a_params_line_without_a_base_url_names_anthropics():
    """A relative Messages url with no --base-url: refused, with Anthropic's address as example."""
    with pytest.raises(InputError, match=re.escape("--base-url https://api.anthropic.com")):
        parse({"custom_id": "a", "params": PARAMS}, base_url=None)


@pytest.mark.parametrize(
    ("url", "api"),
    [
        ("/v1/messages", "messages"),
        ("/v1/messages/", "messages"),
        ("https://gw.example/claude/v1/messages?beta=true", "messages"),
        ("/v1/messages/batches", "anthropic"),
        ("/v1/chat/completions", "chat"),
        ("/openai/deployments/x/chat/completions?api-version=1", "chat"),
        ("/v1/embeddings", ""),
        ("/v1/messagesx", ""),
    ],
)
def test_the_url_names_the_api(url, api):
    """The API is read from the url's path, whatever the base path or the query."""
    assert api_of(url) == api
