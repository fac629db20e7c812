"""`CleanUrl`: a request whose path or query carries a control character is refused at once.

A percent-encoded NUL or other control character (``/v1/jobs/%00``, ``?task=a%00b``) names
nothing the service has (its ids, tasks and cursors are printable), and PostgreSQL cannot even
compare text holding a NUL: passed on, such a value made a store raise, and the route answer
500. It is refused here, before any route, in one place for every route and every store:
400 problem+json saying where the character is and to remove it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, unquote

from .problems import problem_response

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["CleanUrl", "url_problem"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def url_problem(path: str, query: str) -> str | None:
    """Why a request's path or query may not be used (a control character), or None.

    >>> url_problem("/v1/jobs/%00", "") is None
    False
    >>> url_problem("/v1/jobs", "task=echo&limit=5") is None
    True
    """
    parts = [("path", unquote(path, errors="replace"))]
    parts += [
        (f"query parameter {name!r}", f"{name}={value}")
        for name, value in parse_qsl(query, keep_blank_values=True, errors="replace")
    ]
    for where, text in parts:
        found = _CONTROL.search(text)
        if found is not None:
            return (
                f"the {where} holds the control character {found.group()!r}: no id, task or"
                " cursor of this service has one; remove it"
            )
    return None


class CleanUrl:
    """ASGI middleware: answer 400 to a path or query holding a control character."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse the request (`url_problem`), or pass it on."""
        if scope["type"] == "http":
            raw_path = scope.get("raw_path") or scope["path"].encode()
            query = scope.get("query_string", b"").decode("latin-1")
            why = url_problem(raw_path.decode("latin-1"), query)
            if why is not None:
                await problem_response(400, why)(scope, receive, send)
                return
        await self.app(scope, receive, send)
