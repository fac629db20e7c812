"""The OpenAI wire format, pure: read a chat request, price it in tokens, shape the answers.

Token counts are an estimate anyone can reproduce by hand, not a tokenizer: a prompt costs
``ceil(characters of all message contents / 4)`` tokens, and a request is charged its prompt
plus its ``max_tokens`` (default 16), as OpenAI's rate limiter charges before it knows the
answer's length.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

from .._json import BadJSON, loads

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "BadRequest",
    "ChatRequest",
    "ParsedRequest",
    "chat_completion",
    "cost_override",
    "error_body",
    "estimate_tokens",
    "parse_chat",
    "parse_json",
    "parse_object",
    "token_header",
]

#: What a request is charged for its answer when it sets no ``max_tokens``.
DEFAULT_MAX_TOKENS = 16


class BadRequest(Exception):
    """A request the mock refuses with HTTP 400; carries the OpenAI error fields."""

    def __init__(self, message: str, *, code: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param


def error_body(
    message: str, *, error_type: str, code: str, param: str | None = None
) -> dict[str, Any]:
    """Return an OpenAI-style error object: ``{"error": {message, type, param, code}}``."""
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


@dataclass(frozen=True, kw_only=True, slots=True)
class ParsedRequest:
    """What the mock needs from every request it answers, a chat or a Messages one.

    The answer is a short sentence naming `digest`, cut to ``4 * max_tokens`` characters when
    that is shorter: the same prompt always gets the same answer.
    """

    model: str
    max_tokens: int
    digest: str  # a short hash of the prompt: the answer names it, so it is deterministic

    @property
    def sentence(self) -> str:
        """The whole answer, before ``max_tokens`` cuts it."""
        return f"Mock answer {self.digest}."

    def answer(self) -> tuple[str, int, bool]:
        """Return the answer's text, its tokens, and whether ``max_tokens`` cut it."""
        sentence, most = self.sentence, self.max_tokens
        if len(sentence) > 4 * most:
            return sentence[: 4 * most], most, True
        return sentence, min(estimate_tokens(len(sentence)), most), False


@dataclass(frozen=True, kw_only=True, slots=True)
class ChatRequest(ParsedRequest):
    """What the mock needs from a chat request."""

    prompt_tokens: int

    @property
    def cost(self) -> int:
        """Return the tokens the rate limiter charges: prompt plus ``max_tokens``."""
        return self.prompt_tokens + self.max_tokens


def estimate_tokens(chars: int) -> int:
    """Return the tokens `chars` characters of text count for: ``ceil(chars / 4)``.

    >>> estimate_tokens(17)
    5
    """
    return math.ceil(chars / 4)


def parse_json(body: bytes) -> Any:
    """Return the JSON value in `body`, or raise `BadRequest`."""
    try:
        return loads(body)
    except BadJSON as exc:
        msg = f"We could not parse the JSON body of your request: it {exc.problem}"
        raise BadRequest(msg, code="invalid_json") from None


def parse_object(body: bytes, *, keys: str, code: str) -> dict[str, Any]:
    """Return the JSON object in `body`, or raise `BadRequest` naming the `keys` it needs."""
    data = parse_json(body)
    if not isinstance(data, dict):
        msg = f"The request body must be a JSON object with {keys}."
        raise BadRequest(msg, code=code)
    return data


def parse_chat(body: bytes) -> ChatRequest:
    """Read a ``/v1/chat/completions`` body, or raise `BadRequest` saying what is wrong."""
    data = parse_object(body, keys="'model' and 'messages'", code="invalid_request")
    model = data.get("model")
    if not isinstance(model, str) or not model:
        msg = "You must provide a model parameter (a non-empty string)."
        raise BadRequest(msg, code="missing_required_parameter", param="model")
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        msg = "'messages' must be a non-empty array of {role, content} objects."
        raise BadRequest(msg, code="invalid_type", param="messages")
    chars = 0
    digest = hashlib.sha256()
    for index, message in enumerate(messages):
        text = _content_text(message)
        if text is None:
            msg = f"messages[{index}] must be an object with a 'role' and a string 'content'."
            raise BadRequest(msg, code="invalid_type", param=f"messages[{index}]")
        chars += len(text)
        digest.update(text.encode())
        digest.update(b"\x00")
    return ChatRequest(
        model=model,
        prompt_tokens=estimate_tokens(chars),
        max_tokens=_max_tokens(data),
        digest=digest.hexdigest()[:12],
    )


def _content_text(message: object) -> str | None:
    """Return a message's text (a string, or the text parts of a list), or None if malformed."""
    if not isinstance(message, dict) or not isinstance(message.get("role"), str):
        return None
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict)]
        if len(parts) == len(content) and all(isinstance(p, str) for p in parts):
            return "".join(parts)  # type: ignore[arg-type]
    return None


def _max_tokens(data: dict[str, Any]) -> int:
    for name in ("max_completion_tokens", "max_tokens"):
        value = data.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            msg = f"'{name}' must be a whole number >= 1, not {value!r}."
            raise BadRequest(msg, code="invalid_value", param=name)
        return value
    return DEFAULT_MAX_TOKENS


def cost_override(value: str | None) -> int | None:
    """Read the ``x-mock-cost`` header: the exact tokens to charge (None when absent)."""
    return token_header(value, name="x-mock-cost")


def token_header(value: str | None, *, name: str, minimum: int = 1) -> int | None:
    """Read a header that sets a number of tokens exactly (None when absent), or `BadRequest`.

    >>> token_header(" 12 ", name="x-mock-cost")
    12
    """
    if value is None:
        return None
    try:
        tokens = int(value.strip())
    except ValueError:
        tokens = minimum - 1
    if tokens < minimum:
        msg = f"The {name} header must be a whole number of tokens >= {minimum}, not {value!r}."
        raise BadRequest(msg, code="invalid_value", param=name)
    return tokens


def chat_completion(request: ChatRequest, *, completion_id: str, created: int) -> dict[str, Any]:
    """Return a ``chat.completion`` object answering `request`, the same for the same prompt.

    The answer is a short sentence naming the prompt's hash, cut to ``4 * max_tokens``
    characters (``finish_reason: "length"``) when ``max_tokens`` is smaller than it.
    """
    content, completion_tokens, cut = request.answer()
    finish_reason = "length" if cut else "stop"
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": request.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": finish_reason,
            }
        ],
        "usage": {
            "prompt_tokens": request.prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": request.prompt_tokens + completion_tokens,
        },
    }
