"""`ReqwestTransport`: the batch runner's I/O through pyreqwest (Rust's reqwest and hyper).

An opt-in transport (the ``reqwest`` extra), passed as ``Batch(transport=...)``: at 200
requests in flight on a 2-core machine the same request and answer cost about 60-90 us of the
client process's CPU through pyreqwest against 140-170 us through aiohttp (``bench/clients.py``),
but each request waits longer for its answer, so runs bound by the API's latency, the common
case, finish later through it (``bench/http.py`` scenarios 1 and 3: +5% and +20% of the run's
time; docs/decisions.md). A run's own transport is `conveyor.http.http1.Http1Transport`, which
costs less CPU than either.

As `AiohttpTransport`: redirects are not followed (a redirect would carry the run's headers,
its credentials, wherever it points); the engine times each attempt (``--timeout``), only
opening a connection is bounded here; no proxy is taken from the environment (aiohttp takes
none either: the run calls its base URL and nothing else). An answer's body is bounded as in
the other transports (`client.MAX_BODY_BYTES`).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from . import client
from .client import RawAnswer
from .errors import TransportError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping

    from pyreqwest.client import Client
    from pyreqwest.response import ResponseBodyReader

__all__ = ["ReqwestTransport", "open_client"]


def open_client(concurrency: int, *, connect_timeout_s: float) -> Client:
    """A pyreqwest client for one run: `concurrency` connections at most, no redirects."""
    from pyreqwest.client import ClientBuilder  # noqa: PLC0415 - optional, imported when used

    return (
        ClientBuilder()
        .max_connections(concurrency)
        .follow_redirects(False)  # noqa: FBT003 - the builder takes it positionally
        .no_proxy()
        .connect_timeout(dt.timedelta(seconds=connect_timeout_s))
        .error_for_status(False)  # noqa: FBT003 - the builder takes it positionally
        .build()
    )


class ReqwestTransport:
    """Sends through one pyreqwest `Client`, shared by every request of the run."""

    __slots__ = ("_client", "_errors")

    def __init__(self, client: Client) -> None:
        from pyreqwest.exceptions import PyreqwestError  # noqa: PLC0415 - optional

        self._client = client
        self._errors = (PyreqwestError, OSError)

    async def __call__(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None
    ) -> RawAnswer:
        """Send the request and read the whole answer."""
        try:
            request = self._client.request(method, url).headers(headers)
            if body is not None:
                request = request.body_bytes(body)
            async with request.build_streamed() as answer:
                # hyper gives header names in lower case, as RawAnswer keeps them.
                names = dict(answer.headers.items())
                data = await _bounded_body(answer.body_reader, names.get("content-length"))
                return RawAnswer(answer.status, names, data)
        except self._errors as exc:
            raise TransportError(_reason(exc, url)) from exc


async def _bounded_body(reader: ResponseBodyReader, declared: str | None) -> bytes:
    """The answer's body, or `AnswerTooLarge` past `client.MAX_BODY_BYTES`."""
    client.refuse_declared(declared, client.MAX_BODY_BYTES)
    return await client.read_bounded(_parts(reader), client.MAX_BODY_BYTES)


async def _parts(reader: ResponseBodyReader) -> AsyncIterator[bytes]:
    while (part := await reader.read_chunk()) is not None:
        yield bytes(part)


def _reason(exc: BaseException, url: str) -> str:
    """What failed, in words: the host for a connection that failed, and the root cause.

    pyreqwest's message is a tuple of every layer's words; the last is the root cause
    ("Connection refused (os error 111)"). Nothing here names a request header.
    """
    from pyreqwest.exceptions import ConnectError, ConnectTimeoutError  # noqa: PLC0415

    details = getattr(exc, "details", None)
    causes = details.get("causes") if isinstance(details, dict) else None
    root = causes[-1].get("message") if causes and isinstance(causes[-1], dict) else None
    words = str(root or getattr(exc, "message", None) or exc or repr(exc))
    if isinstance(exc, ConnectError | ConnectTimeoutError):
        return f"Cannot connect to host {urlsplit(url).netloc}: {words}"
    return f"{type(exc).__name__}: {words}"
