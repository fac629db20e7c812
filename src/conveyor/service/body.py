"""`BodyLimit`: every request body is counted as it arrives, and refused (413) past its limit.

The limit is enforced where the bytes come in (the ASGI ``receive``), not in each route, so
that no route can forget it, and none reads a byte past it: a body that declares a length
over the limit is answered at once, unread; one sent in chunks (no length, or a false one)
is read up to the limit plus the chunk that crossed it, then answered 413. A route that
buffers a body (``POST /v1/batches``) or spools a multipart upload holds at most that much.

Which limit: uploads (``POST /v1/files``) get ``max_file_bytes`` (plus a little room for a
multipart envelope: the file part itself is held to ``max_file_bytes`` by `Files.save`);
a Message Batch (``POST /v1/messages/batches``, its requests inline) Anthropic's 256 MB, or
``max_file_bytes`` if that is less; every other request ``max_body_bytes``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .problems import Problem, problem_response

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from .config import Limits

__all__ = ["MESSAGE_BATCH_BYTES", "MULTIPART_ROOM", "BodyLimit", "body_limit"]

#: What a multipart upload may add to ``max_file_bytes``: boundaries, part headers, the
#: ``purpose`` field (a few hundred bytes in practice).
MULTIPART_ROOM = 64 * 1024
#: The largest Message Batch (``POST /v1/messages/batches``): Anthropic's 256 MB.
MESSAGE_BATCH_BYTES = 256 * 1024 * 1024


def body_limit(limits: Limits, method: str, path: str) -> tuple[int, str]:
    """The most bytes a request's body may have, and the 413's detail past it.

    >>> from conveyor.service.config import Limits
    >>> body_limit(Limits(max_body_bytes=10, max_file_bytes=99), "POST", "/v1/jobs")[0]
    10
    """
    if method == "POST" and path.rstrip("/") == "/v1/files":
        limit = limits.max_file_bytes
        return limit + MULTIPART_ROOM, (
            f"the file is over max_file_bytes={limit:,}: split it into several files, or ask"
            " the operator to raise [limits] max_file_bytes"
        )
    if method == "POST" and path.rstrip("/") == "/v1/messages/batches":
        # Anthropic's limit, within the operator's for files: a batch's requests come inline.
        limit = min(MESSAGE_BATCH_BYTES, limits.max_file_bytes)
        return limit, (
            f"the batch is over {limit:,} bytes, the most a Message Batch may be: split its"
            " requests into several batches"
        )
    limit = limits.max_body_bytes
    return limit, (
        f"the request body is over max_body_bytes={limit:,}: upload large inputs with"
        " POST /v1/files and pass its file_id"
    )


class BodyLimit:
    """ASGI middleware: refuse a request body past its limit (`body_limit`) as it streams in.

    `limits` is read on each request (the service's own `Limits`).
    """

    def __init__(self, app: ASGIApp, *, limits: Limits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on with a ``receive`` that counts; 413 at once on a declared excess."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        root = scope.get("root_path", "")
        path = scope["path"].removeprefix(root) if root else scope["path"]
        limit, detail = body_limit(self.limits, scope["method"], path)
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            # Answered unread: the client learns at once, and the connection is closed after.
            response = problem_response(413, detail, headers={"Connection": "close"})
            await response(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise Problem(413, detail, headers={"Connection": "close"})
            return message

        await self.app(scope, counted, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else None
    return None
