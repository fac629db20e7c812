"""A request's tokens before it is sent, from its body alone: no tokenizer to download. Pure.

What rate limiters charge before they know the answer's length: the prompt's tokens, estimated
as ``ceil(characters / 4)``, plus the most the answer may hold (``max_tokens``). For a
conversation (a body with a ``messages`` list: OpenAI's chat completions, Claude's Messages),
the characters counted are:

- every message's text: a string ``content``, or its blocks' ``text``; Claude's ``tool_use``
  blocks' ``input`` (as compact JSON), ``tool_result`` blocks' ``content`` (a string or text
  blocks) and ``thinking`` blocks' text; OpenAI's ``tool_calls`` arguments;
- Claude's top-level ``system`` prompt (a string, or text blocks);
- ``tools``, as compact JSON (both APIs send the definitions to the model);

and the answer's bound is ``max_completion_tokens`` or ``max_tokens`` (`DEFAULT_MAX_TOKENS`
when neither is set). Images and documents are not counted (their tokens depend on their
pixels and pages): a prompt made mostly of them is underestimated, and its answer's ``usage``
corrects the limiter. Any other body costs ``ceil(len(its JSON) / 4)`` and asks for no answer
tokens.

Four characters a token is what the mock API charges too, so a client limiter and the mock
agree exactly on text (``bench/token_estimate.py`` compares it with a real tokenizer).
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["DEFAULT_MAX_TOKENS", "estimate_tokens", "output_bound", "request_cost"]

#: What a chat request is charged for its answer when it sets no ``max_tokens``.
DEFAULT_MAX_TOKENS = 16


def estimate_tokens(body: Any, encoded: bytes | None) -> int:
    """Return the tokens a body is likely to be charged: its prompt plus its answer's bound.

    `encoded` is the body as sent (only read for a body that is not a conversation).

    >>> estimate_tokens({"messages": [{"role": "user", "content": "12345678"}]}, None)
    18
    >>> estimate_tokens({"system": "1234", "messages": [], "max_tokens": 10}, None)
    11
    >>> estimate_tokens({"n": 1}, b'{"n":1}')
    2
    """
    if _is_conversation(body):
        return _prompt_tokens(body) + _bound(body)
    return math.ceil(len(encoded or b"") / 4)


def output_bound(body: Any) -> int:
    """The most output tokens a body asks for: its ``max_tokens``.

    `DEFAULT_MAX_TOKENS` for a conversation that sets none; 0 for a body that is not one.

    >>> output_bound({"messages": [], "max_tokens": 300}), output_bound({"n": 1})
    (300, 0)
    """
    return _bound(body) if _is_conversation(body) else 0


def request_cost(body: Any, encoded: bytes | None = None) -> dict[str, float]:
    """A request's cost per dimension before it is sent (`conveyor.limits.costs`).

    ``tokens`` is `estimate_tokens` (what OpenAI's limiter charges up front: prompt plus
    bound); ``output_tokens`` the answer's bound (`output_bound`); ``input_tokens`` the rest,
    the prompt's estimate.

    >>> request_cost({"messages": [{"role": "user", "content": "12345678"}], "max_tokens": 5})
    {'tokens': 7.0, 'input_tokens': 2.0, 'output_tokens': 5.0}
    """
    total = _float(estimate_tokens(body, encoded))
    bound = _float(output_bound(body))
    return {"tokens": total, "input_tokens": total - bound, "output_tokens": bound}


def _float(count: int) -> float:
    """`count` as a float; infinite past a float's range (a max_tokens of 400 digits)."""
    try:
        return float(count)
    except OverflowError:
        return math.inf


def _is_conversation(body: Any) -> bool:
    return isinstance(body, dict) and isinstance(body.get("messages"), list)


def _prompt_tokens(body: dict[str, Any]) -> int:
    chars = sum(_message_chars(m) for m in body["messages"])
    system = body.get("system")
    if system is not None:
        chars += _content_chars(system)
    tools = body.get("tools")
    if isinstance(tools, list) and tools:
        chars += _json_chars(tools)
    return math.ceil(chars / 4)


def _message_chars(message: object) -> int:
    if not isinstance(message, dict):
        return 0
    chars = _content_chars(message.get("content"))
    calls = message.get("tool_calls")  # OpenAI: an assistant's calls, arguments as JSON text
    if isinstance(calls, list):
        for call in calls:
            function = call.get("function") if isinstance(call, dict) else None
            arguments = function.get("arguments") if isinstance(function, dict) else None
            if isinstance(arguments, str):
                chars += len(arguments)
    return chars


def _content_chars(content: object) -> int:
    """The characters of a content: a string, or a list of blocks (see the module docstring)."""
    if isinstance(content, str):
        return len(content)
    if not isinstance(content, list):
        return 0
    chars = 0
    for block in content:
        if not isinstance(block, dict):
            continue
        text = block.get("text")
        if isinstance(text, str):
            chars += len(text)
            continue
        kind = block.get("type")
        if kind == "tool_use":
            chars += _json_chars(block.get("input"))
        elif kind == "tool_result":
            chars += _content_chars(block.get("content"))
        elif kind == "thinking" and isinstance(block.get("thinking"), str):
            chars += len(block["thinking"])
    return chars


def _json_chars(value: object) -> int:
    if value is None:
        return 0
    # default=str: an SDK's parameters may hold objects JSON has no name for; their text
    # is as good an estimate as any.
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str))


def _bound(body: dict[str, Any]) -> int:
    # max_completion_tokens is OpenAI's newer name and wins when both are set.
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return DEFAULT_MAX_TOKENS
