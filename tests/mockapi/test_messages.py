"""Anthropic's Messages wire format and rate-limit headers, pure: no server."""

import json
import math

import pytest

from conveyor.mockapi.bucket import BucketState
from conveyor.mockapi.headers import anthropic_rate_limit_headers, format_rfc3339
from conveyor.mockapi.messages import (
    MessagesRequest,
    answer_text,
    anthropic_error,
    message_answer,
    parse_messages,
)
from conveyor.mockapi.protocol import BadRequest


def body(**fields: object) -> bytes:
    request = {
        "model": "claude-mock",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "Hi!"}],
    }
    request.update(fields)
    return json.dumps({k: v for k, v in request.items() if v is not None}).encode()


def test_input_tokens_count_the_system_prompt_and_every_text_block():
    """ceil(characters / 4) over the system prompt and the messages, strings or text blocks."""
    blocks = [{"type": "text", "text": t} for t in ("ab", "c")]  # 3 characters
    request = parse_messages(
        body(
            system=[{"type": "text", "text": "Be brief."}],  # 9
            messages=[
                {"role": "user", "content": "Hello"},  # 5
                {"role": "assistant", "content": [{"type": "text", "text": "Hi."}]},  # 3
                {"role": "user", "content": blocks},
            ],
        )
    )
    assert request.input_tokens == math.ceil(20 / 4)
    assert (request.model, request.max_tokens, request.output_tokens) == ("claude-mock", 64, None)
    assert parse_messages(body(system="Be brief.")).input_tokens == math.ceil(12 / 4)


@pytest.mark.parametrize(
    ("fields", "names"),
    [
        ({"model": None}, "model"),
        ({"model": ""}, "model"),
        ({"max_tokens": None}, "max_tokens"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": True}, "max_tokens"),
        ({"max_tokens": 1.5}, "max_tokens"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "system", "content": "x"}]}, "messages.0"),
        ({"messages": [{"role": "user", "content": 3}]}, "messages.0"),
        ({"messages": [{"role": "user", "content": [{"type": "image"}]}]}, "messages.0"),
        ({"system": 7}, "system"),
    ],
)
def test_a_malformed_request_is_a_bad_request_naming_the_field(fields, names):
    """Each required field is checked; the message names the one that is wrong."""
    with pytest.raises(BadRequest) as caught:
        parse_messages(body(**fields))
    assert caught.value.message.startswith(names)


def test_a_body_that_is_not_an_object_is_a_bad_request():
    """JSON that is not an object, and bytes that are not JSON, are refused."""
    for raw in (b"[1]", b"{oops"):
        with pytest.raises(BadRequest):
            parse_messages(raw)


def test_the_cost_headers_set_input_and_output_tokens_exactly():
    """x-mock-input-tokens replaces the estimate; x-mock-output-tokens fixes the answer's length."""
    request = parse_messages(body(max_tokens=50), input_header="1234", output_header="50")
    assert (request.input_tokens, request.output_tokens) == (1234, 50)
    text, tokens, reason = answer_text(request)
    assert (len(text), tokens, reason) == (200, 50, "max_tokens")
    shorter = parse_messages(body(max_tokens=50), output_header="7")
    text, tokens, reason = answer_text(shorter)
    assert (len(text), tokens, reason) == (28, 7, "end_turn")
    assert answer_text(parse_messages(body(), output_header="0"))[:2] == ("", 0)


@pytest.mark.parametrize(
    ("input_header", "output_header"),
    [("0", None), ("-3", None), ("lots", None), (None, "-1"), (None, "x"), (None, "65")],
)
def test_bad_cost_headers_are_bad_requests(input_header, output_header):
    """Input >= 1, output 0..max_tokens, whole numbers; anything else names the header."""
    with pytest.raises(BadRequest, match="x-mock-"):
        parse_messages(body(), input_header=input_header, output_header=output_header)


def test_the_answer_has_anthropics_message_shape_and_is_deterministic():
    """A message object with one text block, end_turn, and usage with zero cache tokens."""
    request = parse_messages(body())
    answer = message_answer(request, message_id="msg_mock1")
    assert answer == message_answer(request, message_id="msg_mock1")
    assert (answer["id"], answer["type"], answer["role"], answer["model"]) == (
        "msg_mock1",
        "message",
        "assistant",
        "claude-mock",
    )
    assert answer["content"] == [{"type": "text", "text": f"Mock answer {request.digest}."}]
    assert (answer["stop_reason"], answer["stop_sequence"]) == ("end_turn", None)
    assert answer["usage"] == {
        "input_tokens": 1,
        "output_tokens": math.ceil(len("Mock answer 0123456789ab.") / 4),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }


def test_a_small_max_tokens_cuts_the_answer():
    """The answer is cut to 4 * max_tokens characters and stops for max_tokens."""
    text, tokens, reason = answer_text(
        MessagesRequest(model="m", input_tokens=1, max_tokens=2, digest="0123456789ab")
    )
    assert (text, tokens, reason) == ("Mock ans", 2, "max_tokens")


def test_errors_have_anthropics_shape():
    """{"type": "error", "error": {type, message}} plus the request id, as Anthropic sends."""
    assert anthropic_error("overloaded_error", "Overloaded", request_id="req_1") == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
        "request_id": "req_1",
    }


def state(per_minute: float, capacity: float, level: float, full_in_s: float) -> BucketState:
    return BucketState(per_minute=per_minute, capacity=capacity, level=level, full_in_s=full_in_s)


def test_anthropic_headers_report_per_minute_figures_rounded_as_anthropic_does():
    """limit a minute; remaining scaled to the minute (tokens to the 1,000); reset RFC 3339."""
    states = {
        "requests": state(50, 1.0, 0.5, 0.6),  # half full: 25 of 50 a minute
        "input tokens": state(30_000, 500.0, 358.0, 0.284),  # 21,480 a minute
        "output tokens": state(8_000, 8_000 / 60, -20.0, 2.5),  # a debt reads 0
    }
    headers = anthropic_rate_limit_headers(states, wall_now_s=1_700_000_000.0)
    assert headers == {
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-remaining": "25",
        "anthropic-ratelimit-requests-reset": "2023-11-14T22:13:20.600Z",
        "anthropic-ratelimit-input-tokens-limit": "30000",
        "anthropic-ratelimit-input-tokens-remaining": "21000",
        "anthropic-ratelimit-input-tokens-reset": "2023-11-14T22:13:20.284Z",
        "anthropic-ratelimit-output-tokens-limit": "8000",
        "anthropic-ratelimit-output-tokens-remaining": "0",
        "anthropic-ratelimit-output-tokens-reset": "2023-11-14T22:13:22.500Z",
        # input and output together: the sums, full again when both are
        "anthropic-ratelimit-tokens-limit": "38000",
        "anthropic-ratelimit-tokens-remaining": "21000",
        "anthropic-ratelimit-tokens-reset": "2023-11-14T22:13:22.500Z",
    }


def test_anthropic_headers_cover_only_the_limited_dimensions():
    """No bucket, no headers; the tokens family needs both input and output limits."""
    assert anthropic_rate_limit_headers({}, wall_now_s=0.0) == {}
    only_requests = anthropic_rate_limit_headers(
        {"requests": state(50, 1.0, 1.0, 0.0)}, wall_now_s=0.0
    )
    assert sorted(only_requests) == [
        "anthropic-ratelimit-requests-limit",
        "anthropic-ratelimit-requests-remaining",
        "anthropic-ratelimit-requests-reset",
    ]
    assert only_requests["anthropic-ratelimit-requests-reset"] == "1970-01-01T00:00:00Z"


@pytest.mark.parametrize(
    ("unix_s", "text"),
    [
        (0.0, "1970-01-01T00:00:00Z"),
        (1.0005, "1970-01-01T00:00:01.001Z"),  # rounded up: never early
        (59.9999, "1970-01-01T00:01:00Z"),
        (1_700_000_000.25, "2023-11-14T22:13:20.250Z"),
    ],
)
def test_rfc3339_times_are_utc_and_rounded_up_to_the_millisecond(unix_s, text):
    """Reset times are RFC 3339 in UTC (Z), with milliseconds only when there are any."""
    assert format_rfc3339(unix_s) == text
