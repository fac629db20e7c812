"""`serve`: the mock API in the foreground until Ctrl-C or SIGTERM (``conveyor mock-api``)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import TYPE_CHECKING

from .config import DEFAULT_PORT
from .loop import run_loop
from .server import MockAPI, check_host

if TYPE_CHECKING:
    from collections.abc import Callable

    from .config import MockConfig

__all__ = ["serve"]


def serve(
    config: MockConfig | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    allow_remote: bool = False,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve the mock API until interrupted; block meanwhile.

    Args:
        config: how the API behaves.
        host: the address to bind; a non-loopback one is refused unless `allow_remote`.
        port: the port (0: a free one, reported to `ready`).
        allow_remote: allow binding a non-loopback `host`.
        ready: called with the base URL once the server listens (the CLI prints it).

    SIGTERM stops it cleanly and returns; Ctrl-C stops it cleanly and raises
    `KeyboardInterrupt`, as usual.
    """
    check_host(host, allow_remote=allow_remote)
    run_loop(_serve(config, host=host, port=port, allow_remote=allow_remote, ready=ready))


async def _serve(
    config: MockConfig | None,
    *,
    host: str,
    port: int,
    allow_remote: bool,
    ready: Callable[[str], None] | None,
) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    async with MockAPI(config, host=host, port=port, allow_remote=allow_remote) as api:
        with contextlib.suppress(NotImplementedError):  # no signal handlers on Windows loops
            loop.add_signal_handler(signal.SIGTERM, stop.set)
        if ready is not None:
            ready(api.base_url)
        await stop.wait()
