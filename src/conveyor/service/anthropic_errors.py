"""Anthropic's error shape on the Message Batches routes: ``{"type": "error", "error": {...}}``.

The rest of the service answers its errors as problem+json (`problems`). Under
``/v1/messages`` the official ``anthropic`` package expects Anthropic's shape instead, on
every refusal: a missing key (401), an unknown batch (404), a body too large (413, refused
by `BodyLimit` before any route runs), the store unreachable (503), an unexpected failure
(500), a path or method that does not exist. `AnthropicErrors` rewrites each problem+json
answer to such a path into Anthropic's shape, keeping its status, headers (``Retry-After``)
and detail as the message: one place, so no refusal is left in the other shape, and the
routes raise `Problem` like every other route of the service.

`error_type` names the error as Anthropic does for a status; the results of a batch use it
too, for the requests the upstream refused.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from .problems import PROBLEM_JSON

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["PREFIX", "AnthropicErrors", "anthropic_error", "error_type"]

#: The paths answered in Anthropic's shape (relative to the app's mount point).
PREFIX = "/v1/messages"

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def error_type(status: int) -> str:
    """Anthropic's error type for an HTTP status.

    >>> error_type(404), error_type(422), error_type(503)
    ('not_found_error', 'invalid_request_error', 'api_error')
    """
    known = _TYPES.get(status)
    if known is not None:
        return known
    return "api_error" if status >= 500 else "invalid_request_error"


def anthropic_error(kind: str, message: str) -> dict[str, Any]:
    """An error body in Anthropic's shape (also the ``error`` of an ``errored`` result)."""
    return {"type": "error", "error": {"type": kind, "message": message}}


def _ours(scope: Scope) -> bool:
    root = scope.get("root_path", "")
    path: str = scope["path"]
    if root and path.startswith(root):
        path = path[len(root) :]
    return path == PREFIX or path.startswith(PREFIX + "/")


class AnthropicErrors:
    """ASGI middleware: a problem+json answer under ``/v1/messages`` in Anthropic's shape.

    Only problem+json answers are read (they are small); any other answer passes as it is,
    streamed (the JSONL results).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; rewrite a problem+json answer to one of these paths."""
        if scope["type"] != "http" or not _ours(scope):
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        body = bytearray()

        async def sending(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers", ()))
                if headers.get(b"content-type", b"").startswith(PROBLEM_JSON.encode()):
                    start = message  # held until its body is whole
                    return
            elif message["type"] == "http.response.body" and start is not None:
                body.extend(message.get("body", b""))
                if message.get("more_body", False):
                    return
                await _send_rewritten(send, start, bytes(body))
                return
            await send(message)

        await self.app(scope, receive, sending)


async def _send_rewritten(send: Send, start: Message, body: bytes) -> None:
    status: int = start["status"]
    try:
        detail = str(json.loads(body)["detail"])
    except (ValueError, KeyError, TypeError):
        detail = "the service could not answer this request"
    data = json.dumps(anthropic_error(error_type(status), detail), ensure_ascii=False).encode()
    kept = [
        (name, value)
        for name, value in start.get("headers", ())
        if name.lower() not in {b"content-type", b"content-length"}
    ]
    headers = [
        *kept,
        (b"content-type", b"application/json"),
        (b"content-length", str(len(data)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})
