"""Anthropic's Messages wire format, pure: read a request, count its tokens, shape the answers.

Tokens are the same reproducible estimate as the OpenAI route's (`protocol.estimate_tokens`): the
input is ``ceil(characters of the system prompt and every message's text / 4)``. The answer is
the OpenAI route's sentence naming a hash of the prompt, cut to ``max_tokens`` (``stop_reason:
"max_tokens"``), so the same prompt always gets the same answer and the same usage.

A benchmark that must know its ideal time sets both costs exactly with two headers:
``x-mock-input-tokens: N`` (>= 1) is the request's input tokens, whatever its text, and
``x-mock-output-tokens: N`` (0 to ``max_tokens``) the answer's output tokens (a text of
``4 * N`` characters).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from .protocol import BadRequest, ParsedRequest, estimate_tokens, parse_object, token_header

__all__ = [
    "MessagesRequest",
    "answer_text",
    "anthropic_error",
    "message_answer",
    "parse_messages",
]

_ROLES = frozenset({"user", "assistant"})


@dataclass(frozen=True, kw_only=True, slots=True)
class MessagesRequest(ParsedRequest):
    """What the mock needs from a Messages request (headers applied)."""

    input_tokens: int
    output_tokens: int | None = None  # set by x-mock-output-tokens; None: from the answer


def anthropic_error(error_type: str, message: str, *, request_id: str) -> dict[str, Any]:
    """Return Anthropic's error object: ``{"type": "error", "error": {type, message}, ...}``."""
    return {
        "type": "error",
        "error": {"type": error_type, "message": message},
        "request_id": request_id,
    }


def parse_messages(
    body: bytes, *, input_header: str | None = None, output_header: str | None = None
) -> MessagesRequest:
    """Read a ``/v1/messages`` body and the cost headers, or raise `BadRequest` saying why."""
    keys = "'model', 'max_tokens' and 'messages'"
    data = parse_object(body, keys=keys, code="invalid_request_error")
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("model: Field required (a non-empty string).")
    max_tokens = data.get("max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise _bad(f"max_tokens: Field required, a whole number >= 1 (got {max_tokens!r}).")
    chars, digest = _prompt(data)
    output_tokens = token_header(output_header, name="x-mock-output-tokens", minimum=0)
    if output_tokens is not None and output_tokens > max_tokens:
        raise _bad(
            f"The x-mock-output-tokens header ({output_tokens}) exceeds max_tokens"
            f" ({max_tokens}); raise max_tokens or lower the header."
        )
    input_tokens = token_header(input_header, name="x-mock-input-tokens")
    return MessagesRequest(
        model=model,
        input_tokens=estimate_tokens(chars) if input_tokens is None else input_tokens,
        max_tokens=max_tokens,
        digest=digest,
        output_tokens=output_tokens,
    )


def _prompt(data: dict[str, Any]) -> tuple[int, str]:
    """Return the characters of the system prompt and the messages, and a short hash of them."""
    digest = hashlib.sha256()
    chars = 0
    if "system" in data:
        system = _text(data["system"])
        if system is None:
            raise _bad("system: must be a string or a list of text blocks.")
        chars += len(system)
        digest.update(system.encode() + b"\x01")
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("messages: Field required, a non-empty list of {role, content} objects.")
    for index, message in enumerate(messages):
        text = None
        if isinstance(message, dict) and message.get("role") in _ROLES:
            text = _text(message.get("content"))
        if text is None:
            raise _bad(
                f"messages.{index}: must be an object with a 'role' ('user' or 'assistant')"
                " and a 'content' that is a string or a list of text blocks."
            )
        chars += len(text)
        digest.update(text.encode() + b"\x00")
    return chars, digest.hexdigest()[:12]


def _bad(message: str) -> BadRequest:
    return BadRequest(message, code="invalid_request_error")


def _text(content: object) -> str | None:
    """Return a string, or the joined text of a list of text blocks; None if it is neither."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list) or not content:
        return None
    parts = []
    for block in content:
        if not (isinstance(block, dict) and block.get("type") == "text"):
            return None
        text = block.get("text")
        if not isinstance(text, str):
            return None
        parts.append(text)
    return "".join(parts)


def answer_text(request: MessagesRequest) -> tuple[str, int, str]:
    """Return the answer's text, its output tokens and its stop reason.

    >>> answer_text(MessagesRequest(model="m", input_tokens=5, max_tokens=3, digest="0123abcd"))
    ('Mock answer ', 3, 'max_tokens')
    """
    if request.output_tokens is not None:
        # Exactly 4 characters per token, so that the text's own estimate agrees.
        n = request.output_tokens
        sentence = request.sentence
        text = (sentence + " ") * (4 * n // (len(sentence) + 1) + 1)
        reason = "max_tokens" if n == request.max_tokens else "end_turn"
        return text[: 4 * n], n, reason
    text, tokens, cut = request.answer()
    return text, tokens, "max_tokens" if cut else "end_turn"


def message_answer(request: MessagesRequest, *, message_id: str) -> dict[str, Any]:
    """Return the ``message`` object answering `request`, the same for the same prompt."""
    text, output_tokens, stop_reason = answer_text(request)
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "content": [{"type": "text", "text": text}],
        "model": request.model,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {
            "input_tokens": request.input_tokens,
            "output_tokens": output_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }
