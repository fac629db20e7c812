"""The fault tests' TCP proxy, against a tiny echo server: forward, cut, pause, restore.

Real sockets; a silence is shown by a read that gets nothing within a short socket timeout
(0.3 s: a bounded wait, since "nothing arrives" cannot be observed any other way).
"""

import socket
import socketserver
import threading
from collections.abc import Iterator

import pytest

from .proxy import Proxy

pytestmark = pytest.mark.faults

SILENCE_S = 0.3


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        server: EchoServer = self.server  # type: ignore[assignment]
        try:
            while data := self.request.recv(65536):
                with server.lock:
                    server.received += len(data)
                self.request.sendall(data)
        except ConnectionError:
            pass  # the proxy reset the link: what the tests do on purpose


class EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Echo)
        self.lock = threading.Lock()
        self.received = 0


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def proxy(echo: EchoServer) -> Iterator[Proxy]:
    with Proxy("127.0.0.1", echo.server_address[1]).start() as p:
        yield p


def connect(proxy: Proxy) -> socket.socket:
    return socket.create_connection(("127.0.0.1", proxy.port), timeout=5)


def echoes(sock: socket.socket, data: bytes = b"ping") -> bool:
    """Whether `data` comes back within the silence window (False on silence or EOF)."""
    sock.sendall(data)
    sock.settimeout(SILENCE_S)
    try:
        got = b""
        while len(got) < len(data):
            chunk = sock.recv(65536)
            if not chunk:
                return False
            got += chunk
    except TimeoutError:
        return False
    finally:
        sock.settimeout(5)
    return got == data


def closed_by_peer(sock: socket.socket) -> bool:
    """Whether the connection was closed under us (reset or EOF), within 5 s."""
    sock.settimeout(5)
    try:
        sock.sendall(b"x")
        return sock.recv(65536) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True


def test_the_proxy_forwards_both_ways_and_url_points_at_it(proxy, echo):
    """Bytes go to the server and its answer comes back; `url` keeps user, path and query."""
    with connect(proxy) as sock:
        assert echoes(sock, b"hello")
    assert echo.received == 5
    assert proxy.url("postgresql://u:pw@127.0.0.1:5432/db?schema=s") == (
        f"postgresql://u:pw@127.0.0.1:{proxy.port}/db?schema=s"
    )
    assert proxy.url("redis://127.0.0.1:6379/0") == f"redis://127.0.0.1:{proxy.port}/0"


def test_cut_resets_open_connections_and_new_ones_until_restore(proxy):
    """After `cut` an open connection is closed under its client and a new one at once."""
    with connect(proxy) as before:
        assert echoes(before)
        proxy.cut()
        assert proxy.open_connections == 0
        assert closed_by_peer(before)
    try:
        during = connect(proxy)
    except ConnectionResetError:
        pass  # reset before connect() returned: refused just the same
    else:
        with during:
            assert closed_by_peer(during)
    assert proxy.refused == 1
    proxy.restore()
    with connect(proxy) as after:
        assert echoes(after)


def test_pause_forwards_nothing_and_holds_new_connections_silent(proxy, echo):
    """While paused nothing reaches the server or comes back, and nothing is closed."""
    with connect(proxy) as before:
        assert echoes(before)
        received = echo.received
        proxy.pause()
        assert not echoes(before, b"lost")  # silence, not a close: the read timed out
        with connect(proxy) as during:  # the connection is accepted...
            assert not echoes(during)  # ...and then nothing
            assert echo.received == received  # the server never saw either message
            proxy.restore()
            assert closed_by_peer(during)  # held silent, reset at the restore
        assert closed_by_peer(before)
    with connect(proxy) as after:
        assert echoes(after)


def test_close_stops_listening(echo):
    """After `close`, connecting to the proxy's port is refused."""
    proxy = Proxy("127.0.0.1", echo.server_address[1]).start()
    port = proxy.port
    proxy.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5)


def test_slow_holds_each_chunk_then_forwards_it_and_slow_0_forwards_at_once(proxy):
    """`slow(d)`: an echo (a chunk each way) is late, past the silence window, but it comes."""
    with connect(proxy) as sock:
        proxy.slow(SILENCE_S)  # each way: the echo takes twice the window
        assert not echoes(sock, b"late")  # not within the window...
        sock.settimeout(5)
        assert sock.recv(65536) == b"late"  # ...but it arrives, whole, on the same connection
        proxy.slow(0)
        assert echoes(sock)
