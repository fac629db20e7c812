"""Which API a request line calls, and what Claude's Messages API asks of a line. Pure.

A line's url says which API it calls (`api_of`): OpenAI's chat completions
(``.../chat/completions``), Claude's Messages (``.../v1/messages``), another route of
Anthropic's (``.../v1/messages/...``: token counting, batches), or anything else. What the run
does differently for each is small and decided here:

- every Anthropic request carries an ``anthropic-version`` header, `ANTHROPIC_VERSION` unless
  the run's headers or the line's own name another;
- a Messages line is checked before anything is sent (`messages_problem`): Claude answers a
  body without ``model``, ``max_tokens`` or ``messages`` with a 400, and without
  ``max_tokens`` no limit could know the most the answer may cost;
- Anthropic's own batch line, ``{"custom_id": ..., "params": {...}}`` (the Message Batches
  API's request), is a POST to `MESSAGES_URL` with ``params`` as its body.
"""

from __future__ import annotations

from typing import Any, Final, Literal

__all__ = [
    "ANTHROPIC_VERSION",
    "MESSAGES_URL",
    "Api",
    "api_of",
    "is_anthropic",
    "messages_problem",
]

#: The ``anthropic-version`` header sent to Anthropic's routes unless the run or line sets one.
ANTHROPIC_VERSION: Final = "2023-06-01"
#: Where a line in Anthropic's batch format (``{"custom_id", "params"}``) is sent.
MESSAGES_URL: Final = "/v1/messages"

#: The APIs a line may call, as far as the run treats them differently ("" for any other).
Api = Literal["chat", "messages", "anthropic", ""]


def api_of(url: str) -> Api:
    """The API a request to `url` (relative or absolute) calls.

    >>> api_of("/v1/messages"), api_of("https://gw.example/claude/v1/messages?beta=true")
    ('messages', 'messages')
    >>> api_of("/v1/messages/count_tokens"), api_of("/v1/chat/completions"), api_of("/v1/x")
    ('anthropic', 'chat', '')
    """
    path = url.split("?", 1)[0].split("#", 1)[0].rstrip("/")
    if path.endswith(MESSAGES_URL):
        return "messages"
    if MESSAGES_URL + "/" in path:
        return "anthropic"
    if path.endswith("/chat/completions"):
        return "chat"
    return ""


def is_anthropic(api: Api) -> bool:
    """Whether requests to `api` go to Anthropic (and carry ``anthropic-version``)."""
    return api in ("messages", "anthropic")


def messages_problem(body: Any) -> str | None:
    """What keeps `body` from being a Messages request (``"has ..."``), or None.

    >>> messages_problem({"model": "claude-haiku-4-5", "messages": [{"role": "user"}]})[:46]
    'has a Messages body without "max_tokens", whic'
    """
    if not isinstance(body, dict):
        return (
            "has a Messages body that is not a JSON object: send"
            ' {"model": ..., "max_tokens": ..., "messages": [...]}'
        )
    if _empty(body, "model", str):
        return (
            'has a Messages body without "model": name the Claude model, e.g.'
            ' "model": "claude-haiku-4-5"'
        )
    bound = body.get("max_tokens")
    if isinstance(bound, bool) or not isinstance(bound, int) or bound < 1:
        shown = "without" if bound is None else f"with {str(bound)[:20]!r} as"
        return (
            f'has a Messages body {shown} "max_tokens", which Claude requires (the most'
            ' tokens the answer may hold): add "max_tokens": N, a whole number >= 1'
        )
    if _empty(body, "messages", list):
        return (
            'has a Messages body without "messages": give a non-empty list of'
            ' {"role": "user", "content": ...} objects'
        )
    return None


def _empty(body: dict[Any, Any], key: str, kind: type) -> bool:
    """Whether `body` lacks a non-empty `key` of type `kind` (a string or a list)."""
    value = body.get(key)
    return not isinstance(value, kind) or not value
