"""`Http1Transport`, conveyor run's HTTP/1.1 client, against servers that script every byte.

Real sockets on 127.0.0.1 (asyncio servers written here), so these run in real time: each
server answers at once and nothing waits on a timer. Each test names what a careful client
must do with one framing, one way of closing, or one bad input.
"""

from __future__ import annotations

import asyncio
import gzip
import ssl
import zlib
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest

from conveyor.engine.context import current_slots
from conveyor.http import http1
from conveyor.http.client import RawAnswer
from conveyor.http.errors import AnswerTooLarge, TransportError
from conveyor.http.http1 import Http1Transport

from .fakes import DatedTicket

T = TypeVar("T")
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "Server"], Awaitable[None]]


@dataclass
class Server:
    """A scripted server: what it read, how many connections it took."""

    handler: Handler
    requests: list[bytes] = field(default_factory=list)
    connections: int = 0
    closed_by_client: int = 0
    client_closed: asyncio.Event = field(default_factory=asyncio.Event)
    port: int = 0

    async def read_request(self, reader: asyncio.StreamReader) -> bytes | None:
        """One whole request (head and a Content-Length body), or None at the end."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            self.closed_by_client += 1
            self.client_closed.set()
            return None
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        request = head + await reader.readexactly(length)
        self.requests.append(request)
        return request

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer, self)
        finally:
            writer.close()


async def _serving(
    handler: Handler, host: str = "127.0.0.1", **kwargs: object
) -> tuple[Server, asyncio.Server]:
    server = Server(handler)
    listening = await asyncio.start_server(server._serve, host, 0, **kwargs)  # type: ignore[arg-type]
    server.port = listening.sockets[0].getsockname()[1]
    return server, listening


def _answer(body: bytes = b'{"ok":true}', *, extra: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        + extra
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


async def _keep_answering(reader, writer, server: Server) -> None:
    while await server.read_request(reader) is not None:
        writer.write(_answer())
        await writer.drain()


def _run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, 20))


def _transport(**kwargs: object) -> Http1Transport:
    return Http1Transport(connect_timeout_s=5.0, **kwargs)  # type: ignore[arg-type]


#: What a request that got no answer raised.
Failed = TransportError | AnswerTooLarge

#: A request for `_exchange`: method, URL (``ORIGIN`` stands for the server's), headers, body.
Call = tuple[str, str, dict[str, str], bytes | None]


def _exchange(
    handler: Handler, *calls: Call, host: str = "127.0.0.1"
) -> tuple[list[RawAnswer | Failed], Server]:
    """Send `calls` in turn through one transport to a server run by `handler`.

    Each call's answer, or the `TransportError` it raised, in order; and the server's notes.
    """

    async def main() -> tuple[list[RawAnswer | Failed], Server]:
        server, listening = await _serving(handler, host)
        origin = f"{'[::1]' if host == '::1' else host}:{server.port}"
        answers: list[RawAnswer | Failed] = []
        async with listening:
            transport = _transport()
            for method, url, headers, body in calls:
                try:
                    answers.append(
                        await transport(method, url.replace("ORIGIN", origin), headers, body)
                    )
                except (TransportError, AnswerTooLarge) as exc:
                    answers.append(exc)
            await transport.close()
        return answers, server

    return _run(main())


def _ok(answer: RawAnswer | Failed) -> RawAnswer:
    assert isinstance(answer, RawAnswer), answer
    return answer


def _reason(answer: RawAnswer | Failed) -> str:
    assert isinstance(answer, TransportError | AnswerTooLarge), answer
    return str(answer)


GET: Call = ("GET", "http://ORIGIN/", {}, None)


def test_answers_come_back_whole_on_one_kept_connection() -> None:
    """Status, lower-cased headers and body; three requests share one connection."""
    call: Call = ("POST", "http://ORIGIN/v1/chat/completions", {"A": "1"}, b"{}")
    answers, server = _exchange(_keep_answering, call, call, call)
    assert [_ok(a).status for a in answers] == [200, 200, 200]
    assert _ok(answers[0]).headers["content-type"] == "application/json"
    assert _ok(answers[0]).body == b'{"ok":true}'
    assert server.connections == 1
    assert len(server.requests) == 3


def test_the_request_is_written_as_http_1_1_with_its_own_length_and_host() -> None:
    """A line's Host and Content-Length are not taken; the URL's path is percent-encoded."""
    headers = {"Authorization": "Bearer k", "Host": "evil", "Content-Length": "99"}
    _, server = _exchange(
        _keep_answering, ("POST", "http://ORIGIN/v1/é x?q=1", headers, b'{"a":1}')
    )
    head, body = server.requests[0].split(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /v1/%C3%A9%20x?q=1 HTTP/1.1"
    assert lines[1].startswith(b"Host: 127.0.0.1:")
    assert b"Authorization: Bearer k" in lines
    assert b"Content-Length: 7" in lines
    assert not any(line.startswith((b"Host: evil", b"Content-Length: 99")) for line in lines)
    assert body == b'{"a":1}'


def test_credentials_in_the_url_become_basic_authorization() -> None:
    _, server = _exchange(_keep_answering, ("GET", "http://user:p%40ss@ORIGIN/x", {}, None))
    request = server.requests[0]
    assert b"Authorization: Basic dXNlcjpwQHNz\r\n" in request
    assert b"user" not in request.split(b"\r\n")[1]  # not in Host


@pytest.mark.parametrize(
    ("name", "value"),
    [("X-A", "v\r\nX-Injected: 1"), ("X-A", "v\nb"), ("X-A\r\nX-B", "v"), ("X:A", "v")],
)
def test_a_header_with_a_line_break_is_refused_and_nothing_is_sent(name, value) -> None:
    (answer,), server = _exchange(_keep_answering, ("POST", "http://ORIGIN/", {name: value}, b""))
    assert repr(name) in _reason(answer)
    assert "not sent" in _reason(answer)
    assert server.requests == []


def test_a_chunked_answer_is_joined() -> None:
    async def chunked(reader, writer, server: Server) -> None:
        while await server.read_request(reader) is not None:
            writer.write(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
            )

    answers, server = _exchange(chunked, GET, GET)
    assert [_ok(a).body for a in answers] == [b"hello world"] * 2
    assert server.connections == 1


def test_an_answer_without_a_length_ends_with_its_connection() -> None:
    """No Content-Length, not chunked: the body is what came before the server closed."""

    async def until_close(reader, writer, server: Server) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it")
        await writer.drain()

    answers, server = _exchange(until_close, GET, GET)
    assert [_ok(a).body for a in answers] == [b"all of it"] * 2
    assert server.connections == 2  # not kept: the server closed it


def test_an_answer_cut_short_fails_its_request_and_is_not_sent_again() -> None:
    """The server read the request and died mid-answer: the engine's retry decides, not us."""

    async def cut(reader, writer, server: Server) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        await writer.drain()

    (answer,), server = _exchange(cut, ("POST", "http://ORIGIN/", {}, b"{}"))
    assert "in the middle of its answer" in _reason(answer)
    assert len(server.requests) == 1


async def _one_then_close(reader, writer, server: Server) -> None:
    await server.read_request(reader)
    writer.write(_answer())
    await writer.drain()


def _bodies(server: Server) -> list[bytes]:
    return [r.rsplit(b"\r\n", 1)[1] for r in server.requests]


def test_a_connection_the_server_closed_while_idle_is_replaced_without_losing_the_request() -> None:
    """Kept alive by the answer, closed by the server afterwards: the next request goes anew.

    Seen closed in the pool, or dead as it is written (then sent again: a GET is safe twice).
    """
    answers, server = _exchange(
        _one_then_close, ("GET", "http://ORIGIN/1", {}, None), ("GET", "http://ORIGIN/2", {}, None)
    )
    assert [_ok(a).status for a in answers] == [200, 200]
    assert server.connections == 2
    assert [r.split(b" ")[1] for r in server.requests] == [b"/1", b"/2"]  # each read once


def test_a_reused_connection_dead_before_answering_sends_the_request_once_more() -> None:
    """The server drops a kept connection as a request arrives on it (it closed it idle).

    Nothing of an answer came, so the request goes once more, on a new connection.
    """

    async def drop_the_second(reader, writer, server: Server) -> None:
        while await server.read_request(reader) is not None:
            if len(server.requests) == 2:
                return  # closes without a byte of answer
            writer.write(_answer())
            await writer.drain()

    key = {"Idempotency-Key": "k-2"}
    answers, server = _exchange(
        drop_the_second,
        ("POST", "http://ORIGIN/", {}, b"1"),
        ("POST", "http://ORIGIN/", key, b"2"),
        ("GET", "http://ORIGIN/", {}, None),
    )
    assert _ok(answers[1]).status == 200
    assert server.connections == 2
    assert _bodies(server) == [b"1", b"2", b"2", b""]


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_a_request_not_safe_to_send_twice_is_not_sent_again(method) -> None:
    """The server may have read it before it dropped the kept connection: the attempt fails.

    The engine's retry policy decides then, counted and paced like any retry.
    """

    async def drop_the_second(reader, writer, server: Server) -> None:
        while await server.read_request(reader) is not None:
            if len(server.requests) == 2:
                return
            writer.write(_answer())
            await writer.drain()

    answers, server = _exchange(
        drop_the_second, ("POST", "http://ORIGIN/", {}, b"1"), (method, "http://ORIGIN/", {}, b"2")
    )
    assert _reason(answers[1]) == "the server closed the connection before answering"
    assert _bodies(server) == [b"1", b"2"]


def test_a_request_on_a_new_connection_closed_before_answering_is_not_sent_again() -> None:
    """A fresh connection has no idle excuse: its failure is the attempt's, for the engine."""

    async def drop(reader, writer, server: Server) -> None:
        await server.read_request(reader)

    (answer,), server = _exchange(drop, ("POST", "http://ORIGIN/", {}, b"1"))
    assert _reason(answer) == "the server closed the connection before answering"
    assert len(server.requests) == 1


def test_an_idle_connection_older_than_the_limit_is_not_reused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(http1, "IDLE_S", -1.0)
    _, server = _exchange(_keep_answering, GET, GET, GET)
    assert server.connections == 3


def test_connection_close_in_the_answer_is_honoured() -> None:
    async def closing(reader, writer, server: Server) -> None:
        while await server.read_request(reader) is not None:
            writer.write(_answer(extra=b"Connection: close\r\n"))
            await writer.drain()

    _, server = _exchange(closing, GET, GET)
    assert server.connections == 2


@pytest.mark.parametrize(
    ("encoding", "encode"),
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", lambda b: zlib.compress(b)[2:-4]),  # raw deflate, as some servers send
    ],
)
def test_an_encoded_answer_is_decoded(encoding, encode) -> None:
    body = b'{"text":"' + b"a" * 500 + b'"}'

    async def encoded(reader, writer, server: Server) -> None:
        while await server.read_request(reader) is not None:
            writer.write(_answer(encode(body), extra=f"Content-Encoding: {encoding}\r\n".encode()))

    (answer,), _ = _exchange(encoded, GET)
    assert _ok(answer).body == body


def test_an_encoding_not_known_fails_its_request_naming_it() -> None:
    async def brotli(reader, writer, server: Server) -> None:
        while await server.read_request(reader) is not None:
            writer.write(_answer(b"\x1b\x00", extra=b"Content-Encoding: br\r\n"))

    (answer,), _ = _exchange(brotli, GET)
    assert "'br' is not one Conveyor decodes" in _reason(answer)


def test_a_head_answer_ends_with_its_headers() -> None:
    """A HEAD answer announces a body it does not send: waiting for it would hang."""

    async def head(reader, writer, server: Server) -> None:
        while await server.read_request(reader) is not None:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nX-Seen: yes\r\n\r\n")
            await writer.drain()

    call: Call = ("HEAD", "http://ORIGIN/", {}, None)
    answers, _ = _exchange(head, call, call)
    seen = [(_ok(a).status, _ok(a).body, _ok(a).headers["x-seen"]) for a in answers]
    assert seen == [(200, b"", "yes")] * 2


def test_an_interim_answer_is_skipped_for_the_final_one() -> None:
    async def early_hints(reader, writer, server: Server) -> None:
        while await server.read_request(reader) is not None:
            writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + _answer(b"final"))

    (answer,), _ = _exchange(early_hints, GET)
    assert (_ok(answer).status, _ok(answer).body) == (200, b"final")
    assert "link" not in _ok(answer).headers


def test_an_answer_that_is_not_http_fails_its_request() -> None:
    async def garbage(reader, writer, server: Server) -> None:
        await server.read_request(reader)
        writer.write(b"SSH-2.0-OpenSSH\r\n\r\n")
        await writer.drain()
        await reader.read()

    (answer,), _ = _exchange(garbage, GET)
    assert "not valid HTTP/1.1" in _reason(answer)


def test_a_refused_connection_names_the_host_and_port() -> None:
    async def main() -> str:
        server, listening = await _serving(_keep_answering)
        port = server.port
        listening.close()
        await listening.wait_closed()
        with pytest.raises(TransportError) as caught:
            await _transport()("GET", f"http://127.0.0.1:{port}/", {}, None)
        return str(caught.value)

    reason = _run(main())
    assert reason.startswith("cannot connect to 127.0.0.1:")
    assert "ConnectionRefusedError" in reason


@pytest.mark.parametrize(
    "url",
    [
        "ftp://127.0.0.1/",
        "http:///nohost",
        "http://[::1/",
        # An IDNA label too long or empty, a lone surrogate: the item fails, not the run.
        "http://b\u00fccher..example/",
        "http://" + "\u00fc" * 70 + ".example/",
        "http://h/\udcff",
    ],
)
def test_a_url_it_cannot_send_to_is_named(url) -> None:
    async def main() -> str:
        with pytest.raises(TransportError) as caught:
            await _transport()("GET", url, {}, None)
        return str(caught.value)

    assert _run(main()).startswith(f"cannot send to {url!r}")


def test_a_request_cancelled_in_flight_closes_its_connection() -> None:
    """The engine's --timeout cancels the attempt: that connection is never reused."""
    answered = asyncio.Event()

    async def slow_first(reader, writer, server: Server) -> None:
        while await server.read_request(reader) is not None:
            if len(server.requests) == 1:
                answered.set()
                continue  # never answers the run's first request
            writer.write(_answer())
            await writer.drain()

    async def main() -> Server:
        server, listening = await _serving(slow_first)
        async with listening:
            transport = _transport()
            url = f"http://127.0.0.1:{server.port}/"
            task = asyncio.create_task(transport("GET", url, {}, None))
            await answered.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            answer = await transport("GET", url, {}, None)
            assert answer.status == 200
            await transport.close()
            await server.client_closed.wait()  # the cancelled one's end, read by the server
        return server

    server = _run(main())
    assert server.connections == 2


@pytest.mark.parametrize("dated", [True, False])
def test_a_dated_transport_dates_the_attempts_slots_when_sent_and_answered(dated) -> None:
    async def main() -> DatedTicket:
        server, listening = await _serving(_keep_answering)
        ticket = DatedTicket()
        async with listening:
            transport = _transport(dated=dated)
            current_slots.set([ticket])  # type: ignore[list-item]
            before = asyncio.get_running_loop().time()
            await transport("GET", f"http://127.0.0.1:{server.port}/", {}, None)
            after = asyncio.get_running_loop().time()
            await transport.close()
        if dated:
            assert before <= ticket.sent[0] <= ticket.answered[0] <= after
        return ticket

    ticket = _run(main())
    assert (len(ticket.sent), len(ticket.answered)) == ((1, 1) if dated else (0, 0))


def _tls_server_context(tmp_cert: object) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    import trustme

    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


def test_https_checks_the_certificate() -> None:
    """A trusted certificate answers; the default trust store refuses one it does not know."""
    server_context, client_context = _tls_server_context(None)

    async def main() -> tuple[RawAnswer, str]:
        server, listening = await _serving(_keep_answering, ssl=server_context)
        async with listening:
            url = f"https://127.0.0.1:{server.port}/"
            trusting = _transport(ssl_context=client_context)
            answer = await trusting("GET", url, {}, None)
            await trusting.close()
            with pytest.raises(TransportError) as caught:
                await _transport()("GET", url, {}, None)
        return answer, str(caught.value)

    answer, refused = _run(main())
    assert answer.status == 200
    assert "CERTIFICATE_VERIFY_FAILED" in refused


def test_a_header_block_past_the_bound_fails_its_request() -> None:
    """A server that never ends its headers cannot fill the client's memory."""

    async def endless(reader, writer, server: Server) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n")
        for n in range(http1.MAX_HEADER_BYTES // 1000 + 2):
            writer.write(f"X-{n}: {'a' * 1000}\r\n".encode())
            await writer.drain()
        writer.write(b"\r\n")
        await writer.drain()
        await reader.read()

    (answer,), _ = _exchange(endless, GET)
    assert "headers pass 256 KiB" in _reason(answer)


def test_bytes_on_an_idle_connection_retire_it() -> None:
    """An answer nobody asked for (a server out of step) is never taken for the next one."""

    async def extra(reader, writer, server: Server) -> None:
        while await server.read_request(reader) is not None:
            writer.write(_answer(b"asked") + _answer(b"not asked"))
            await writer.drain()

    answers, server = _exchange(extra, GET, GET, GET)
    assert [_ok(a).body for a in answers] == [b"asked"] * 3
    assert server.connections == 3  # none was reused after its extra answer


def test_an_ipv6_literal_host_is_reached_and_named_in_brackets() -> None:
    _, server = _exchange(_keep_answering, ("GET", "http://ORIGIN/x", {}, None), host="::1")
    assert server.requests[0].split(b"\r\n")[1].startswith(b"Host: [::1]:")
