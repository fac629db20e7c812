"""`Http1Transport`: HTTP/1.1 on asyncio's own transports, answers parsed by httptools.

The batch runner's transport. Every request of a run goes to one origin with the same few
headers and waits for its whole answer; a general client pays per request for what such a run
never uses (cookies, redirects, proxies, streaming bodies, trace signals, a header multidict,
a response object). This one keeps, per origin, the idle keep-alive connections, writes each
request in one ``write`` and hands the answer over when its last byte is parsed: about half of
aiohttp's CPU per request at 200 in flight (``bench/clients.py``, docs/decisions.md), with no
added latency.

What it keeps of a careful client:

- TLS for ``https://`` (the default context: certificates and host names checked);
- keep-alive, with an idle connection dropped after `IDLE_S`; a request whose reused
  connection closed before any byte of its answer (the server closed it while idle) is sent
  once more on a new connection when that is safe, an idempotent method or an idempotency
  key; any other fails its attempt, for the engine's retry policy (`_replayable`);
- answers of any framing (a length, chunked, or up to the connection's end) and a
  ``Content-Encoding`` of gzip or deflate (sent only when a request's own headers ask);
- an answer's body, read or decoded, is bounded (`MAX_BODY_BYTES`): a larger one, an endless
  one or a small gzip that would decode to gigabytes fails its request (`AnswerTooLarge`,
  not retried) and holds at most the bound in memory;
- a method or header name that is not an HTTP token, and a header value with a line break,
  are refused, never sent (no request-line or header injection); a chunked answer's trailers
  are not taken for its headers;
- redirects are not followed (a redirect would carry the run's headers, its credentials,
  wherever it points) and no proxy is taken from the environment: as `AiohttpTransport`;
- the engine times each attempt (``--timeout``), and an attempt cancelled mid-request closes
  its connection; opening a connection is bounded by `connect_timeout_s`.

With ``dated=True`` each attempt's slots are dated when its request is written and when its
answer's headers arrive (`conveyor.engine.sendtime`): a window counts admissions from then, a
bucket learns how late calls leave.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import zlib
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote, urlsplit

import httptools

from ..engine.context import current_slots
from . import client
from .client import RawAnswer
from .errors import AnswerTooLarge, TransportError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from ..limits.protocol import Ticket

__all__ = ["IDLE_S", "MAX_BODY_BYTES", "MAX_HEADER_BYTES", "Http1Transport"]

#: An idle connection older than this is closed rather than reused (servers drop idle ones).
IDLE_S = 15.0
#: The connections kept idle per origin, at most (more are closed as they come back).
_IDLE_MAX = 1024
#: The most bytes of header names and values one answer may hold (aiohttp's line bound, 8 KiB,
#: times the 32 headers an API answer rarely passes); a larger header block fails the request,
#: as does a head still unfinished after this many bytes (one endless line).
MAX_HEADER_BYTES = 256 * 1024
#: The most bytes one answer's body may hold, as sent and as decoded (`client.MAX_BODY_BYTES`).
MAX_BODY_BYTES = client.MAX_BODY_BYTES
#: The request headers the transport writes itself.
_OWN = frozenset({"host", "content-length", "transfer-encoding", "connection"})
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
#: Methods a server may receive twice with the effect of once (RFC 9110, 9.2.2).
_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})
#: Characters left as they are in a path and query (RFC 3986's reserved and unreserved, and %).
_URL_SAFE = "/?#[]@!$&'()*+,;=-._~:%"
#: An HTTP token (RFC 9110, 5.6.2), what a method and a header name are made of: anything else
#: (a space, a line break, a letter beyond ASCII) would rewrite the request line or the headers.
_is_token = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+").fullmatch


class _Target:
    """What a URL's requests share: their origin, request target and ``Host`` header."""

    __slots__ = ("authorization", "host", "host_header", "https", "origin", "port", "target")

    def __init__(self, url: str) -> None:
        try:
            self._parse(url)
        except ValueError as exc:  # a bad port, a host IDNA cannot encode, a lone surrogate
            msg = f"cannot send to {url!r}: {exc}"
            raise TransportError(msg) from None

    def _parse(self, url: str) -> None:
        split = urlsplit(url)
        port = split.port
        if split.scheme not in ("http", "https") or not split.hostname:
            msg = f"cannot send to {url!r}: not an http:// or https:// URL with a host"
            raise TransportError(msg)
        self.https = split.scheme == "https"
        self.host = split.hostname
        self.port = port if port is not None else (443 if self.https else 80)
        self.origin = (self.https, self.host, self.port)
        netloc = split.netloc.rpartition("@")[2]
        path = split.path or "/"
        if split.query:
            path += "?" + split.query
        # As a browser does: what is not ASCII, or not allowed in a URL, is percent-encoded.
        self.target = quote(path, safe=_URL_SAFE).encode("ascii")
        self.authorization: str | None = None
        if split.username is not None:
            import base64  # noqa: PLC0415 - rare

            pair = f"{unquote(split.username)}:{unquote(split.password or '')}"
            self.authorization = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
        if any(ord(c) < 0x21 or c == "\x7f" for c in netloc):
            msg = f"cannot send to {url!r}: its host holds a space or a control character"
            raise TransportError(msg)
        self.host_header = netloc.encode("idna") if not netloc.isascii() else netloc.encode()


class _Connection(asyncio.Protocol):
    """One keep-alive connection: one request at a time, its answer parsed as it arrives."""

    __slots__ = (
        "_body",
        "_body_bytes",
        "_head_read",
        "_header_bytes",
        "_headers",
        "_parser",
        "_slots",
        "_status",
        "_waiter",
        "closed",
        "got_bytes",
        "idle_since",
        "keep_alive",
        "transport",
    )

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[RawAnswer] | None = None
        self._headers: list[tuple[str, str]] = []
        self._header_bytes = 0
        self._head_read = 0
        self._body: list[bytes] = []
        self._body_bytes = 0
        self._status = 0
        self._slots: Sequence[Ticket] = ()
        self.closed = False
        self.got_bytes = False
        self.keep_alive = False
        self.idle_since = 0.0

    # asyncio's side.

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream transport

    def data_received(self, data: bytes) -> None:
        if self._waiter is None or self._waiter.done():
            self.close()  # bytes no request asked for: the connection cannot be trusted again
            return
        self.got_bytes = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail("the server switched protocols, which Conveyor does not speak")
        except httptools.HttpParserError as exc:
            self._fail(f"the answer is not valid HTTP/1.1 ({exc})")
        else:
            if not self._status:  # the head is unfinished: httptools holds its last line whole
                self._head_read += len(data)
                if self._head_read > MAX_HEADER_BYTES:
                    self._fail(f"the answer's headers pass {MAX_HEADER_BYTES // 1024} KiB")

    def eof_received(self) -> bool | None:
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self._status and exc is None and self._ends_with_connection():
            self.keep_alive = False
            self._finish()
            return
        reason = f"{type(exc).__name__}: {exc}" if exc else "the server closed the connection"
        if not self.got_bytes:
            reason += " before answering"
        else:
            reason += " in the middle of its answer"
        waiter.set_exception(TransportError(reason))

    # httptools' side.

    def on_message_begin(self) -> None:
        if self._waiter is None or self._waiter.done():
            self.close()  # a second answer to one request: the connection is out of step
            raise httptools.HttpParserError  # stops the parser

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value)
        if self._header_bytes > MAX_HEADER_BYTES:
            self._fail(f"the answer's headers pass {MAX_HEADER_BYTES // 1024} KiB")
            raise httptools.HttpParserError  # stops the parser; the request failed above
        if not self._status:  # trailers, after the body, are counted but not taken
            key, text = name.decode("latin-1").lower(), value.decode("latin-1")
            if key == "content-length":  # a length past the bound fails before the body
                try:
                    client.refuse_declared(text, MAX_BODY_BYTES)
                except AnswerTooLarge as exc:
                    self._fail_with(exc)
                    raise httptools.HttpParserError from None  # stops the parser
            self._headers.append((key, text))

    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()
        if self._slots:
            now = asyncio.get_running_loop().time()
            for ticket in self._slots:
                ticket.mark_answered(now)
        if 100 <= self._status < 200:  # an interim answer (103 Early Hints): the real one follows
            self._headers.clear()
            self._status = 0

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_bytes > MAX_BODY_BYTES:
            self._too_large("it went on past that")
            raise httptools.HttpParserError  # stops the parser; the request failed above
        self._body.append(body)

    def on_message_complete(self) -> None:
        if not self._status:
            return  # the end of an interim answer
        self.keep_alive = self._parser.should_keep_alive()
        self._finish()

    # Conveyor's side.

    def send(
        self, data: bytes, *, expect_body: bool, slots: Sequence[Ticket]
    ) -> asyncio.Future[RawAnswer]:
        assert self.transport is not None
        waiter = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        self._headers = []
        self._header_bytes = 0
        self._head_read = 0
        self._body = []
        self._body_bytes = 0
        self._status = 0
        self._slots = slots
        self.got_bytes = False
        if self.closed:  # the server closed it since it opened: no answer would ever come
            waiter.set_exception(
                TransportError("the server closed the connection before answering")
            )
            return waiter
        self.transport.write(data)
        if slots:
            now = asyncio.get_running_loop().time()
            for ticket in slots:
                ticket.mark_sent(now)
        if not expect_body:
            # A HEAD answer's headers end it: httptools would wait for the body it announces.
            self._parser = httptools.HttpResponseParser(_HeadOnly(self))
        return waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def _ends_with_connection(self) -> bool:
        names = {name for name, _ in self._headers}
        return "content-length" not in names and "transfer-encoding" not in names

    def _finish(self) -> None:
        waiter = self._waiter
        self._slots = ()
        if waiter is None or waiter.done():
            return
        headers: dict[str, str] = {}
        for name, value in self._headers:
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        body = b"".join(self._body)
        encoding = headers.get("content-encoding")
        if encoding and body:
            try:
                body = _decoded(body, encoding)
            except (zlib.error, ValueError) as exc:
                self.keep_alive = False
                waiter.set_exception(TransportError(f"the answer's {encoding} body: {exc}"))
                return
            except AnswerTooLarge:
                self._too_large(f"its {encoding} body decodes to more")
                return
        if not self.keep_alive:
            self.close()
        waiter.set_result(RawAnswer(self._status, headers, body))

    def _fail(self, reason: str) -> None:
        """Fail the waiting request with `reason` (the first reason given wins) and close."""
        self._fail_with(TransportError(reason))

    def _too_large(self, how: str) -> None:
        """Fail the waiting request: its answer passes `MAX_BODY_BYTES` (`how`), and close."""
        self._body = []
        self._fail_with(AnswerTooLarge(how, MAX_BODY_BYTES))

    def _fail_with(self, error: Exception) -> None:
        waiter = self._waiter
        self.close()
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)


class _HeadOnly:
    """httptools' callbacks for the answer to a HEAD: the headers are the whole answer."""

    __slots__ = ("_connection",)

    def __init__(self, connection: _Connection) -> None:
        self._connection = connection

    def on_header(self, name: bytes, value: bytes) -> None:
        self._connection.on_header(name, value)

    def on_headers_complete(self) -> None:
        connection = self._connection
        connection.on_headers_complete()
        if connection._status:  # noqa: SLF001 - its own helper
            # The answer ends here; the connection's next answer gets a fresh parser.
            connection.keep_alive = False  # the parser cannot skip the body it announces
            connection._finish()  # noqa: SLF001


def _decoded(body: bytes, encoding: str) -> bytes:
    """`body` decoded from its ``Content-Encoding``; `ValueError` for one not known."""
    name = encoding.strip().lower()
    if name == "identity":
        return body
    if name in ("gzip", "x-gzip"):
        return _inflated(body, 47)  # gzip or zlib header, detected
    if name == "deflate":
        try:
            return _inflated(body, 15)
        except zlib.error:
            return _inflated(body, -15)  # raw deflate, as some servers send it
    msg = f"encoding {encoding!r} is not one Conveyor decodes (gzip, deflate)"
    raise ValueError(msg)


def _inflated(body: bytes, wbits: int) -> bytes:
    """`body` decompressed, never past `MAX_BODY_BYTES` (`AnswerTooLarge` if it would go on)."""
    inflater = zlib.decompressobj(wbits=wbits)
    out = inflater.decompress(body, MAX_BODY_BYTES + 1)
    if len(out) > MAX_BODY_BYTES or inflater.unconsumed_tail:
        raise AnswerTooLarge("it decodes to more", MAX_BODY_BYTES)
    if not inflater.eof:
        raise zlib.error("incomplete or truncated stream")
    return out


class Http1Transport:
    """Sends HTTP/1.1 requests over kept-alive connections, one request per connection at a time.

    Args:
        connect_timeout_s: the longest wait for a connection (and its TLS handshake).
        dated: date the running attempt's slots when its request leaves and when its
            answer's headers arrive (a window or a bucket reads these).
        ssl_context: for ``https://``; the default checks certificates and host names.
    """

    __slots__ = ("_connect_timeout_s", "_dated", "_idle", "_ssl", "_targets")

    def __init__(
        self,
        *,
        connect_timeout_s: float,
        dated: bool = False,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._connect_timeout_s = connect_timeout_s
        self._dated = dated
        self._ssl = ssl_context
        self._idle: dict[tuple[bool, str, int], list[_Connection]] = {}
        self._targets: dict[str, _Target] = {}

    async def __call__(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None
    ) -> RawAnswer:
        """Send the request and read the whole answer."""
        target = self._targets.get(url)
        if target is None:
            target = _Target(url)
            if len(self._targets) < 4096:
                self._targets[url] = target
        data = _request_bytes(method, target, headers, body)
        slots = current_slots.get() if self._dated else ()
        expect_body = method != "HEAD"
        connection = self._reused(target.origin)
        if connection is not None:
            try:
                return await self._exchange(connection, target, data, expect_body, slots)
            except TransportError:
                if connection.got_bytes or not _replayable(method, headers):
                    raise
                # Closed by the server while idle, most likely before it read the request: a
                # request it is safe to send twice goes again, on a new connection.
        connection = await self._open(target)
        return await self._exchange(connection, target, data, expect_body, slots)

    async def close(self) -> None:
        """Close every idle connection."""
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()

    def _reused(self, origin: tuple[bool, str, int]) -> _Connection | None:
        idle = self._idle.get(origin)
        if not idle:
            return None
        now = asyncio.get_running_loop().time()
        while idle:
            connection = idle.pop()
            transport = connection.transport
            if connection.closed or transport is None or transport.is_closing():
                continue
            if now - connection.idle_since > IDLE_S:
                connection.close()
                continue
            return connection
        return None

    async def _open(self, target: _Target) -> _Connection:
        loop = asyncio.get_running_loop()
        context: ssl.SSLContext | None = None
        if target.https:
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            context = self._ssl
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                _, connection = await loop.create_connection(
                    _Connection,
                    target.host,
                    target.port,
                    ssl=context,
                    server_hostname=target.host if context else None,
                )
        except TimeoutError:
            msg = (
                f"cannot connect to {target.host}:{target.port}: no connection within"
                f" {self._connect_timeout_s:g} s"
            )
            raise TransportError(msg) from None
        except (OSError, ssl.SSLError) as exc:
            msg = f"cannot connect to {target.host}:{target.port}: {type(exc).__name__}: {exc}"
            raise TransportError(msg) from exc
        return connection

    async def _exchange(
        self,
        connection: _Connection,
        target: _Target,
        data: bytes,
        expect_body: bool,
        slots: Sequence[Ticket],
    ) -> RawAnswer:
        try:
            answer = await connection.send(data, expect_body=expect_body, slots=slots)
        except BaseException:
            connection.close()  # cancelled or failed mid-request: its state is unknown
            raise
        if connection.keep_alive and not connection.closed:
            connection.idle_since = asyncio.get_running_loop().time()
            idle = self._idle.setdefault(target.origin, [])
            if len(idle) < _IDLE_MAX:
                idle.append(connection)
            else:
                connection.close()
        return answer


def _request_bytes(
    method: str, target: _Target, headers: Mapping[str, str], body: bytes | None
) -> bytes:
    """The request as written: request line, headers, body."""
    if not _is_token(method):
        msg = f"the method {method!r} is not an HTTP token: not sent"
        raise TransportError(msg)
    out = [method.encode("ascii"), b" ", target.target, b" HTTP/1.1\r\nHost: "]
    out += (target.host_header, b"\r\n")
    parts: list[str] = []
    authorized = False
    for name, value in headers.items():
        lowered = name.lower()
        if lowered in _OWN:
            continue
        if "\n" in value or "\r" in value or not _is_token(name):
            msg = f"the header {name!r} holds a line break or a name not an HTTP token: not sent"
            raise TransportError(msg)
        authorized = authorized or lowered == "authorization"
        parts.append(f"{name}: {value}\r\n")
    if target.authorization and not authorized:
        parts.append(f"Authorization: {target.authorization}\r\n")
    if body is not None or method in _BODY_METHODS:
        parts.append(f"Content-Length: {len(body) if body else 0}\r\n")
    parts.append("\r\n")
    try:
        out.append("".join(parts).encode("latin-1"))
    except UnicodeEncodeError as exc:
        msg = f"a header holds a character HTTP/1.1 cannot carry ({exc.object[exc.start]!r})"
        raise TransportError(msg) from None
    if body:
        out.append(body)
    return b"".join(out)


def _replayable(method: str, headers: Mapping[str, str]) -> bool:
    """Whether a request may go again after its reused connection died without an answer.

    The server most likely closed that connection while it was idle, but it may have read the
    request: only an idempotent method, or a request with an idempotency key, is sent again
    at once (as Go's client does). Any other fails its attempt, and the engine's retry policy
    decides, counted and paced like every retry.
    """
    if method in _IDEMPOTENT:
        return True
    return any(name.lower() in ("idempotency-key", "x-idempotency-key") for name in headers)
