"""A TCP proxy the fault tests own, put between Conveyor and a real server (never stopped).

It runs an event loop in a thread of its own, so that worker processes started by a test can
connect through it while the test's own code (blocking or async) drives it::

    proxy = Proxy("127.0.0.1", 5432).start()
    url = proxy.url("postgresql://postgres@127.0.0.1:5432/test")   # the same URL, via the proxy
    proxy.cut()       # every open connection reset; new ones reset at once
    proxy.restore()   # new connections pass again
    proxy.pause()     # nothing forwarded either way; new connections held, silent
    proxy.restore()   # the silent connections are reset; new ones pass
    proxy.slow(0.2)   # every chunk, either way, held 0.2 s before it is forwarded
    proxy.slow(0)     # forwarded at once again
    proxy.close()

`cut` is a crashed server or a refused port: the client learns at once (a TCP reset). `pause`
is a silent network (a firewall dropping packets): the client's calls hang until its own
timeouts give up on them. `restore` after a pause resets the connections held silent, as a
firewall that forgot their state would: the client must then open new ones. `slow` is a
congested link or an overloaded server: everything arrives, late.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from collections.abc import Coroutine
    from typing import Any, Self

__all__ = ["Proxy"]

#: How long a call from the test's thread waits for the proxy's loop to act, in seconds.
CALL_TIMEOUT_S = 10.0

Mode = Literal["open", "cut", "paused"]


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0), not a FIN: the peer learns at once."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@dataclass(eq=False)
class _Link:
    """One client connection and its connection upstream, and the two pipes between them."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    #: Set by `pause`: the pipes forward nothing more (what they read is held, then dropped).
    silent: bool = False
    pipes: list[asyncio.Task[None]] = field(default_factory=list)

    def reset(self) -> None:
        for pipe in self.pipes:
            pipe.cancel()
        _reset(self.client)
        _reset(self.upstream)


class Proxy:
    """Forwards 127.0.0.1:`port` (any free port) to `host`:`upstream_port`; see the module doc."""

    def __init__(self, host: str, upstream_port: int) -> None:
        self.host, self.upstream_port = host, upstream_port
        self.port = 0
        self.mode: Mode = "open"
        #: Connections accepted in all, and refused (reset at once) while cut.
        self.accepted = 0
        self.refused = 0
        #: Set by `slow`: how long each chunk read is held before it is forwarded, seconds.
        self.delay_s = 0.0
        self._links: set[_Link] = set()
        self._held: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    @classmethod
    def to(cls, url: str) -> Self:
        """A started proxy to the host and port of `url` (``scheme://user@host:port/...``)."""
        parts = urlsplit(url)
        assert parts.hostname is not None
        assert parts.port is not None, f"{url}: give the port explicitly"
        return cls(parts.hostname, parts.port).start()

    def url(self, url: str) -> str:
        """`url` with its host and port replaced by the proxy's (user, path and query kept)."""
        parts = urlsplit(url)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@127.0.0.1:{self.port}" if userinfo else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    # -- what the test calls (from its own thread) -----------------------------------------

    def start(self) -> Self:
        """Listen on a free port of 127.0.0.1 (`port`) and forward."""
        self._thread.start()
        self._call(self._start())
        return self

    def cut(self) -> None:
        """Reset every open connection, and every new one at once, until `restore`."""
        self._call(self._set("cut"))

    def pause(self) -> None:
        """Forward nothing on open connections; hold new ones, silent; until `restore`."""
        self._call(self._set("paused"))

    def restore(self) -> None:
        """Forward again: new connections pass; those held silent by `pause` are reset."""
        self._call(self._set("open"))

    def slow(self, delay_s: float) -> None:
        """Hold each chunk `delay_s` seconds before forwarding it, either way (0: no delay)."""
        self.delay_s = delay_s

    def close(self) -> None:
        """Stop listening, reset every connection and end the proxy's thread."""
        if not self._thread.is_alive():
            return
        self._call(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(CALL_TIMEOUT_S)
        self._loop.close()

    @property
    def open_connections(self) -> int:
        """Connections forwarded now (not counting those held by a pause)."""
        return len(self._links)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _call(self, coro: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(CALL_TIMEOUT_S)

    # -- the proxy's loop ------------------------------------------------------------------

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _set(self, mode: Mode) -> None:
        if mode == "cut":
            self._reset_all()
        elif mode == "paused":
            for link in self._links:
                link.silent = True
        else:
            self._reset_all()  # only silent links are left here after a pause
        self.mode = mode

    def _reset_all(self) -> None:
        for link in list(self._links):
            link.reset()
        self._links.clear()
        for writer in self._held:
            _reset(writer)
        self._held.clear()

    async def _close(self) -> None:
        assert self._server is not None
        self._server.close()
        self._reset_all()
        await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self.mode == "cut":
            self.refused += 1
            _reset(writer)
            return
        if self.mode == "paused":
            self._held.add(writer)  # accepted by the kernel, then nothing: a silent network
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.upstream_port)
        except OSError:
            _reset(writer)
            return
        if self.mode != "open":  # cut or paused while connecting upstream
            _reset(up_writer)
            if self.mode == "cut":
                _reset(writer)
            else:
                self._held.add(writer)
            return
        link = _Link(writer, up_writer)
        self._links.add(link)
        loop = asyncio.get_running_loop()
        link.pipes = [
            loop.create_task(self._pipe(link, reader, up_writer)),
            loop.create_task(self._pipe(link, up_reader, writer)),
        ]

    async def _pipe(
        self, link: _Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            while data := await reader.read(65536):
                if link.silent:
                    await asyncio.Event().wait()  # held until `restore` resets the link
                if self.delay_s > 0:
                    await asyncio.sleep(self.delay_s)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        if link in self._links and not link.silent:
            # One side closed (or failed): close the whole link, as a plain forwarder would.
            self._links.discard(link)
            for pipe in link.pipes:
                if pipe is not asyncio.current_task():
                    pipe.cancel()
            link.client.close()
            link.upstream.close()
