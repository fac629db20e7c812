"""The two ways the mock API ends a request: a JSON answer, or a connection closed unanswered."""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

__all__ = ["drop", "json_answer"]

_encode = msgspec.json.Encoder().encode


def json_answer(status: int, data: Any, headers: dict[str, str] | None = None) -> web.Response:
    """Return `data` as a JSON answer with `status` and `headers`."""
    return web.Response(
        status=status,
        body=_encode(data),
        content_type="application/json",
        headers=headers,
    )


def drop(request: web.BaseRequest) -> web.Response:
    """Close the connection without an answer.

    The returned response is never sent: aiohttp finds the transport closed, treats it as a
    client that went away, and ends the connection quietly.
    """
    transport = request.transport
    if transport is not None:
        transport.close()
    return web.Response(status=500)
