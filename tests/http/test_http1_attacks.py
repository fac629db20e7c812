"""`Http1Transport` against a hostile or broken server and against requests it must not send.

Scripted asyncio servers on 127.0.0.1, as in ``test_http1.py`` (whose helpers these share):
framing that could desynchronise a kept connection, heads that never end, inputs that would
inject into the request line, and many requests in flight on one origin.
"""

from __future__ import annotations

import asyncio
import gzip
import zlib

import pytest

from conveyor.http import http1
from conveyor.http.errors import AnswerTooLarge, TransportError
from conveyor.policy.classify import classify

from .test_http1 import GET, Server, _exchange, _ok, _reason, _run, _serving, _transport

_HEAD = b"HTTP/1.1 200 OK\r\n"


def _answering(answer: bytes):
    async def handler(reader, writer, server: Server) -> None:
        while await server.read_request(reader) is not None:
            writer.write(answer)
            await writer.drain()

    return handler


@pytest.mark.parametrize(
    ("framing", "named"),
    [
        (b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", "Transfer-Encoding"),
        (b"Content-Length: 5\r\nContent-Length: 5\r\n", "Duplicate Content-Length"),
        (b"Content-Length: -5\r\n", "Content-Length"),
        (b"Content-Length: 99999999999999999999999\r\n", "overflow"),
    ],
)
def test_an_answer_whose_length_is_ambiguous_fails_its_request(framing, named) -> None:
    """Two framings, two lengths, a negative or overflowing one: refused, never guessed."""
    answer = _HEAD + framing + b"\r\n5\r\nhello\r\n0\r\n\r\n"
    (failed,), _ = _exchange(_answering(answer), GET)
    assert "not valid HTTP/1.1" in _reason(failed)
    assert named in _reason(failed)


def test_trailers_do_not_change_the_answers_headers() -> None:
    """A chunked answer's trailers come after the body: they cannot re-encode or add to it."""
    answer = (
        _HEAD + b"Transfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n0\r\nContent-Encoding: gzip\r\nX-Late: 1\r\n\r\n"
    )
    answers, server = _exchange(_answering(answer), GET, GET)
    assert [_ok(a).body for a in answers] == [b"hello"] * 2
    assert _ok(answers[0]).headers == {"transfer-encoding": "chunked"}
    assert server.connections == 1


@pytest.mark.parametrize(
    "head", [_HEAD + b"X-Endless: ", b"HTTP/1.1 200 ", _HEAD + b"X-Name-Without-End"]
)
def test_one_endless_header_line_is_bounded_too(head) -> None:
    """A status line or one header that never ends fails at the bound, not at the server's end."""

    async def endless(reader, writer, server: Server) -> None:
        await server.read_request(reader)
        writer.write(head)
        for _ in range(http1.MAX_HEADER_BYTES // 4096 + 2):
            writer.write(b"a" * 4096)
            await writer.drain()
        await reader.read()

    (failed,), _ = _exchange(endless, GET)
    assert "headers pass 256 KiB" in _reason(failed)


def test_a_header_block_just_under_the_bound_in_small_pieces_is_answered() -> None:
    """The bound counts the head's bytes once, however the server splits its writes."""
    headers = b"".join(f"X-{n}: {'a' * 90}\r\n".encode() for n in range(2000))  # ~196 KiB

    async def piecewise(reader, writer, server: Server) -> None:
        await server.read_request(reader)
        whole = _HEAD + headers + b"Content-Length: 2\r\n\r\nok"
        for start in range(0, len(whole), 1000):
            writer.write(whole[start : start + 1000])
            await writer.drain()
        await reader.read()

    (answer,), _ = _exchange(piecewise, GET)
    assert _ok(answer).body == b"ok"


@pytest.mark.parametrize(
    "method", ["GET / HTTP/1.1\r\nX-Injected: 1\r\nX:", "GET /x", "GÉT", "", "PO\x00ST"]
)
def test_a_method_that_is_not_a_token_is_refused_and_nothing_is_sent(method) -> None:
    """A method with a space, a line break or a non-ASCII letter would rewrite the request line."""
    (answer,), server = _exchange(
        _answering(_HEAD + b"Content-Length: 0\r\n\r\n"), (method, "http://ORIGIN/", {}, None)
    )
    assert repr(method) in _reason(answer)
    assert server.requests == []


@pytest.mark.parametrize("name", ["X A", "X\tA", ""])
def test_a_header_name_that_is_not_a_token_is_refused(name) -> None:
    (answer,), server = _exchange(
        _answering(_HEAD + b"Content-Length: 0\r\n\r\n"),
        ("GET", "http://ORIGIN/", {name: "v"}, None),
    )
    assert repr(name) in _reason(answer)
    assert server.requests == []


def test_port_zero_is_not_taken_for_the_default_port() -> None:
    async def main() -> str:
        with pytest.raises(TransportError) as caught:
            await _transport()("GET", "http://127.0.0.1:0/", {}, None)
        return str(caught.value)

    assert "127.0.0.1:0" in _run(main())


def test_two_hundred_requests_in_flight_each_get_their_own_answer() -> None:
    """Each answer echoes its request's path: none is crossed, no connection is pooled twice."""

    async def echo(reader, writer, server: Server) -> None:
        while (request := await server.read_request(reader)) is not None:
            path = request.split(b" ", 2)[1]
            writer.write(_HEAD + b"Content-Length: %d\r\n\r\n" % len(path))
            await writer.drain()
            writer.write(path)  # the body in a write of its own: parsed across reads
            await writer.drain()

    async def main() -> tuple[list[bytes], int, int, int]:
        server, listening = await _serving(echo)
        async with listening:
            transport = _transport()
            url = f"http://127.0.0.1:{server.port}/"
            bodies: list[bytes] = []
            for _ in range(2):  # the second round reuses the first's connections
                answers = await asyncio.gather(
                    *(transport("GET", f"{url}{n}", {}, None) for n in range(200))
                )
                bodies += [a.body for a in answers]
            pooled = [id(c) for cs in transport._idle.values() for c in cs]
            await transport.close()
        return bodies, len(pooled), len(set(pooled)), server.connections

    bodies, pooled, distinct, connections = _run(main())
    assert bodies == [f"/{n}".encode() for n in range(200)] * 2
    assert pooled == distinct == connections == 200


def test_a_new_connection_closed_before_its_request_is_written_fails_at_once() -> None:
    """Closed between its opening and the request's write: the request fails, it does not hang."""

    async def closes_at_once(reader, writer, server: Server) -> None:
        writer.close()

    async def main() -> str:
        server, listening = await _serving(closes_at_once)
        async with listening:
            transport = _transport()
            target = http1._Target(f"http://127.0.0.1:{server.port}/")
            connection = await transport._open(target)
            # The connection has no event for its close: yield to the loop until it is seen.
            while not connection.closed:  # noqa: ASYNC110
                await asyncio.sleep(0)
            with pytest.raises(TransportError) as caught:
                await transport._exchange(connection, target, b"GET / HTTP/1.1\r\n\r\n", True, ())
        return str(caught.value)

    assert "before answering" in _run(main())


@pytest.fixture
def one_mib(monkeypatch: pytest.MonkeyPatch) -> int:
    """Answers bounded at 1 MiB, so that the tests send megabytes, not the real 64 MiB."""
    monkeypatch.setattr(http1, "MAX_BODY_BYTES", 2**20)
    return 2**20


def test_a_length_past_the_bound_fails_before_the_body_is_read(one_mib: int) -> None:
    """A Content-Length of 5 GB: refused from the head, not retried, the body never waited for."""
    answer = _HEAD + b"Content-Length: 5000000000\r\n\r\n" + b"a" * 1000
    (failed,), _ = _exchange(_answering(answer), GET)
    assert isinstance(failed, AnswerTooLarge)
    assert "larger than Conveyor takes from one answer, 1 MiB" in _reason(failed)
    assert "Content-Length says 5,000,000,000 bytes" in _reason(failed)
    assert classify(failed).kind == "permanent"


@pytest.mark.parametrize("framing", [b"Transfer-Encoding: chunked\r\n", b"Connection: close\r\n"])
def test_an_endless_body_fails_at_the_bound(one_mib: int, framing: bytes) -> None:
    """Chunks or bytes until the connection ends, forever: the request fails at 1 MiB."""

    async def endless(reader, writer, server: Server) -> None:
        await server.read_request(reader)
        writer.write(_HEAD + framing + b"\r\n")
        chunk = b"a" * 65536
        for _ in range(one_mib // len(chunk) + 8):
            writer.write(b"10000\r\n" + chunk + b"\r\n" if b"chunked" in framing else chunk)
            await writer.drain()
        await reader.read()

    (failed,), _ = _exchange(endless, GET)
    assert isinstance(failed, AnswerTooLarge)
    assert "went on past that" in _reason(failed)


@pytest.mark.parametrize(
    ("encoding", "wbits"), [(b"gzip", 31), (b"deflate", 15), (b"deflate", -15)]
)
def test_a_small_body_that_decodes_past_the_bound_fails(
    one_mib: int, encoding: bytes, wbits: int
) -> None:
    """A few KiB that would inflate to 64 MiB of zeros: stopped at the bound, not inflated."""
    packer = zlib.compressobj(9, zlib.DEFLATED, wbits)
    bomb = packer.compress(b"\0" * 64 * one_mib) + packer.flush()
    assert len(bomb) < 100_000
    head = _HEAD + b"Content-Encoding: " + encoding + b"\r\nContent-Length: "
    answer = head + str(len(bomb)).encode() + b"\r\n\r\n" + bomb
    (failed,), _ = _exchange(_answering(answer), GET)
    assert isinstance(failed, AnswerTooLarge)
    assert f"its {encoding.decode()} body decodes to more" in _reason(failed)


def test_a_body_at_the_bound_is_answered_whole(one_mib: int) -> None:
    """Exactly 1 MiB, gzipped or not, on one connection: both answered, byte for byte."""
    body = bytes(range(256)) * (one_mib // 256)
    packed = gzip.compress(body)
    plain = _HEAD + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    zipped = (
        _HEAD
        + b"Content-Encoding: gzip\r\nContent-Length: "
        + str(len(packed)).encode()
        + b"\r\n\r\n"
        + packed
    )

    async def both(reader, writer, server: Server) -> None:
        for answer in (plain, zipped):
            await server.read_request(reader)
            writer.write(answer)
            await writer.drain()
        await reader.read()

    answers, server = _exchange(both, GET, GET)
    assert [_ok(a).body for a in answers] == [body, body]
    assert server.connections == 1


def test_a_truncated_gzip_body_still_fails_as_broken() -> None:
    """A gzip stream cut short is not taken for a whole answer."""
    packed = gzip.compress(b"x" * 10_000)[:-20]
    head = _HEAD + b"Content-Encoding: gzip\r\nContent-Length: "
    answer = head + str(len(packed)).encode() + b"\r\n\r\n" + packed
    (failed,), _ = _exchange(_answering(answer), GET)
    assert isinstance(failed, TransportError)
    assert "gzip body" in _reason(failed)
