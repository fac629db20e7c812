"""The token estimate of a request, and its cost per dimension, for OpenAI's and Claude's bodies."""

import doctest
import json

import pytest

from conveyor.http import estimate_tokens as http_estimate_tokens
from conveyor.http.request import estimate_tokens as request_module_estimate_tokens
from conveyor.llm import tokens as tokens_module
from conveyor.llm.tokens import DEFAULT_MAX_TOKENS, estimate_tokens, request_cost
from conveyor.mockapi.messages import parse_messages

CLAUDE = {
    "model": "claude-haiku-4-5",
    "max_tokens": 100,
    "system": "x" * 40,  # 10 tokens
    "messages": [{"role": "user", "content": "y" * 80}],  # 20 tokens
}


def test_the_old_import_paths_are_the_same_function():
    """conveyor.http.estimate_tokens and conveyor.http.request.estimate_tokens still work."""
    assert http_estimate_tokens is estimate_tokens
    assert request_module_estimate_tokens is estimate_tokens


@pytest.mark.parametrize(
    ("system", "chars"),
    [
        ("x" * 40, 40),
        ([{"type": "text", "text": "x" * 24}, {"type": "text", "text": "z" * 16}], 40),
        (
            [{"type": "text", "text": "x" * 40, "cache_control": {"type": "ephemeral"}}],
            40,
        ),
    ],
)
def test_the_top_level_system_prompt_is_counted_as_a_string_or_text_blocks(system, chars):
    """Messages' system (a string, or text blocks) counts like the messages' text."""
    body = {**CLAUDE, "system": system}
    assert estimate_tokens(body, None) == (chars + 80) // 4 + 100


def test_the_estimate_matches_what_the_mock_messages_route_charges():
    """System and messages text: the client's input estimate is the mock's input count."""
    body = {**CLAUDE, "system": [{"type": "text", "text": "s" * 37}]}
    body["messages"] = [
        {"role": "user", "content": "a" * 41},
        {"role": "assistant", "content": [{"type": "text", "text": "b" * 9}]},
        {"role": "user", "content": "c" * 3},
    ]
    parsed = parse_messages(json.dumps(body).encode())
    assert request_cost(body)["input_tokens"] == parsed.input_tokens


def test_tool_use_input_tool_result_content_and_tools_are_counted():
    """A tool call's input JSON, a tool result's content and the tools' JSON all count."""
    tool_input = {"city": "Paris", "unit": "celsius"}
    tools = [{"name": "weather", "description": "d" * 20, "input_schema": {"type": "object"}}]
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 10,
        "tools": tools,
        "messages": [
            {"role": "user", "content": "What is the weather?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Let me look."},
                    {"type": "tool_use", "id": "t1", "name": "weather", "input": tool_input},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "t1", "content": "21 degrees"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "t2",
                        "content": [{"type": "text", "text": "sunny"}],
                    },
                ],
            },
        ],
    }

    def compact(value: object) -> int:
        return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False))

    chars = len("What is the weather?") + len("Let me look.") + compact(tool_input)
    chars += len("21 degrees") + len("sunny") + compact(tools)
    assert estimate_tokens(body, None) == -(-chars // 4) + 10


def test_openai_tool_calls_arguments_are_counted():
    """An OpenAI assistant message's tool_calls arguments are prompt text too."""
    body = {
        "messages": [
            {"role": "user", "content": "1234"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"type": "function", "function": {"name": "f", "arguments": "5678"}}
                ],
            },
        ],
        "max_tokens": 0,
    }
    assert estimate_tokens(body, None) == 2


def test_request_cost_splits_input_and_output_by_max_tokens():
    """request_cost: tokens = input + output, output = max_tokens (the most the answer holds)."""
    assert request_cost(CLAUDE) == {"tokens": 130.0, "input_tokens": 30.0, "output_tokens": 100.0}
    openai = {"messages": [{"role": "user", "content": "12345678"}], "max_completion_tokens": 7}
    assert request_cost(openai) == {"tokens": 9.0, "input_tokens": 2.0, "output_tokens": 7.0}


def test_request_cost_without_max_tokens_reserves_the_default_and_other_bodies_no_output():
    """A chat body with no bound is charged the default; a body that is no chat, no output."""
    chat = {"messages": [{"role": "user", "content": "12345678"}]}
    assert request_cost(chat) == {
        "tokens": 2.0 + DEFAULT_MAX_TOKENS,
        "input_tokens": 2.0,
        "output_tokens": float(DEFAULT_MAX_TOKENS),
    }
    other = {"input": "x" * 30}
    encoded = json.dumps(other, separators=(",", ":")).encode()
    assert request_cost(other, encoded) == {
        "tokens": 11.0,
        "input_tokens": 11.0,
        "output_tokens": 0.0,
    }


def test_odd_blocks_are_skipped_not_fatal():
    """Images, unknown blocks, non-dict messages and a bad system count nothing; no error."""
    body = {
        "system": 42,
        "max_tokens": 1,
        "messages": [
            "not a message",
            {"role": "user", "content": [{"type": "image", "source": {"data": "A" * 999}}, 7]},
            {"role": "user", "content": [{"type": "tool_result", "content": 5}]},
            {"role": "user", "content": [{"type": "tool_use", "input": {"a": {1, 2}}}]},
        ],
    }
    assert estimate_tokens(body, None) >= 1


def test_the_docstring_examples_hold():
    """The module's examples are right."""
    assert doctest.testmod(tokens_module).failed == 0


def test_the_estimate_is_on_conveyor_llm_for_limiters_of_your_own():
    """conveyor.llm.request_cost gives a Limiter's cost= per dimension (and the estimate)."""
    import conveyor.llm

    assert conveyor.llm.request_cost is request_cost
    assert conveyor.llm.estimate_tokens is estimate_tokens
    assert {"estimate_tokens", "request_cost", "limit_openai"} <= set(conveyor.llm.__all__)
