"""`MetricsListener`: ``GET /metrics`` on an address of its own (``--metrics-port``).

A worker has no HTTP service, and a service with API keys serves its metrics here rather
than on its API's port (see ``docs/howto/monitor-with-prometheus.md``). Served by aiohttp
(already a dependency) in the process's event loop, so a scrape reads the same limiters,
tasks and store as the work does.

Bound to 127.0.0.1 by default. On a loopback address it answers only requests whose ``Host``
is a loopback name or address (421 otherwise), so that a web page opened on the machine
cannot read it under a name of its own (DNS rebinding), as the service does without keys.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from aiohttp import web

from .._closing import Serving
from ..errors import ConfigError

if TYPE_CHECKING:
    from .registry import Metrics

__all__ = ["MetricsListener", "is_loopback_host"]


def is_loopback_host(value: str) -> bool:
    """Whether a ``Host`` header names this machine's loopback (any port).

    >>> is_loopback_host("localhost:9464"), is_loopback_host("[::1]:9464")
    (True, True)
    >>> is_loopback_host("127.0.0.1"), is_loopback_host("evil.example:9464")
    (True, False)
    """
    host = value.strip().lower()
    if host.startswith("["):
        host = host[1:].partition("]")[0]
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class MetricsListener(Serving):
    """Serves `metrics` at ``http://host:port/metrics`` while running (``async with``).

    Args:
        metrics: what to serve.
        host: the address to bind (``127.0.0.1``).
        port: the port (0: any free one; `url` says which).
    """

    def __init__(self, metrics: Metrics, *, host: str = "127.0.0.1", port: int = 9464) -> None:
        self._metrics = metrics
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self._loopback = host == "localhost" or _is_loopback_address(host)
        #: ``http://host:port`` once started.
        self.url: str | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        if self._loopback and not is_loopback_host(request.host):
            return web.Response(
                status=421,
                text="this metrics listener answers only requests addressed to a loopback name"
                " (localhost, 127.0.0.1, [::1]); scrape it by one of those\n",
            )
        body, content_type = await self._metrics.render(request.headers.get("Accept", ""))
        return web.Response(
            body=body, headers={"Content-Type": content_type, "Cache-Control": "no-store"}
        )

    async def start(self) -> None:
        """Bind and serve; `ConfigError` if the address cannot be listened on (in use)."""
        app = web.Application()
        app.router.add_get("/metrics", self._handle)
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, self._host, self._port).start()
        except OSError as exc:
            await runner.cleanup()
            msg = (
                f"metrics: cannot listen on {self._host}:{self._port} ({exc.strerror or exc}):"
                " pick another --metrics-port (or --metrics-host)"
            )
            raise ConfigError(msg) from exc
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        host, port = runner.addresses[0][:2]
        self.url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    async def stop(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()


def _is_loopback_address(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
