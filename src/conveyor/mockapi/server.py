"""`MockAPI`: the mock API served from the current event loop, for tests.

>>> async with MockAPI(MockConfig(latency_ms=5, rpm=600)) as api:  # doctest: +SKIP
...     async with aiohttp.ClientSession() as session:
...         await session.post(f"{api.base_url}/v1/chat/completions", json=...)
...     assert api.stats().ok == 1
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from aiohttp import web

from .._closing import Serving
from ..errors import ConfigError
from .app import MockHandler
from .config import MockConfig

if TYPE_CHECKING:
    from .shared import SharedCounters
    from .stats import MockStats

__all__ = ["MockAPI", "check_host"]

# Room for a benchmark's hundreds of connections arriving at once.
_BACKLOG = 1024
# Hung requests are released before shutting down, so in-flight handlers end within their
# latency; this only bounds a pathological one.
_SHUTDOWN_TIMEOUT_S = 5.0


def check_host(host: str, *, allow_remote: bool) -> None:
    """Refuse to bind a host other than loopback unless `allow_remote` says so."""
    if allow_remote or host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        msg = (
            f"host={host!r} is not a loopback address: the mock API would be reachable from"
            " other machines. Use 127.0.0.1, or pass allow_remote=True (--allow-remote) if"
            " you mean it."
        )
        raise ConfigError(msg)


class MockAPI(Serving):
    """The mock API on 127.0.0.1, served by the running event loop while the block runs.

    It shares the loop (and the CPU) with the client, which suits tests; a benchmark wants
    `run_in_process` instead.

    Args:
        config: how the API behaves (the defaults: 50 ms fixed latency, no limits, no faults).
        host: the address to bind; loopback only unless `allow_remote`.
        port: the port; 0 (the default) picks a free one, see `base_url`.
        allow_remote: allow a non-loopback `host`.
        reuse_port: bind with ``SO_REUSEPORT``, so that other processes serve the same port
            (`run_in_process` with ``processes=``).
        shared: where the processes serving one port pool their counters.
    """

    def __init__(
        self,
        config: MockConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        allow_remote: bool = False,
        reuse_port: bool = False,
        shared: SharedCounters | None = None,
    ) -> None:
        check_host(host, allow_remote=allow_remote)
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65_535:
            msg = f"MockAPI(port={port!r}): port must be a whole number from 0 to 65535"
            raise ConfigError(msg)
        self.config = MockConfig() if config is None else config
        self._host = host
        self._port = port
        self._reuse_port = reuse_port
        self._shared = shared
        self._handler: MockHandler | None = None
        self._runner: web.ServerRunner | None = None
        self._base_url: str | None = None

    @property
    def base_url(self) -> str:
        """Return the URL the API answers at, like ``http://127.0.0.1:54321``."""
        if self._base_url is None:
            msg = "the mock API is not running: use it as `async with MockAPI(...) as api:`"
            raise RuntimeError(msg)
        return self._base_url

    def stats(self) -> MockStats:
        """Return a snapshot of the counters (the same as ``GET /stats``)."""
        return self._running_handler().stats()

    def reset(self) -> None:
        """Start a fresh phase (the same as ``POST /stats/reset``).

        Zero the counters, forget the request ids, empty the rate-limit window and restart the
        seeded draws, so that runs compared side by side against one server start equal.
        """
        self._running_handler().reset()

    def _running_handler(self) -> MockHandler:
        if self._handler is None:
            msg = "the mock API is not running: use it as `async with MockAPI(...) as api:`"
            raise RuntimeError(msg)
        return self._handler

    async def start(self) -> None:
        """Start serving (what ``async with`` does on entry)."""
        if self._runner is not None:
            msg = "this MockAPI is already running; make a new one to serve again"
            raise RuntimeError(msg)
        handler = MockHandler(self.config, shared=self._shared)
        # handler_cancellation: a client that gives up cancels its handler, so a hung request
        # ends when its client times out instead of holding memory until `hang_s`.
        server = web.Server(handler, handler_cancellation=True, access_log=None)
        runner = web.ServerRunner(
            server, handle_signals=False, shutdown_timeout=_SHUTDOWN_TIMEOUT_S
        )
        await runner.setup()
        try:
            site = web.TCPSite(
                runner,
                self._host,
                self._port,
                backlog=_BACKLOG,
                reuse_port=self._reuse_port or None,
            )
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._handler, self._runner = handler, runner
        host, port = runner.addresses[0][:2]
        self._base_url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    async def stop(self) -> None:
        """Release every hung request, close every connection and stop (``async with`` exit)."""
        if self._runner is None or self._handler is None:
            return
        self._handler.release()
        try:
            await self._runner.cleanup()
        finally:
            self._runner = None
            self._base_url = None
