"""The mock API in a process of its own, so that it shares neither the loop nor the CPU core.

`run_in_process` is what benchmarks use: a client measured against an in-loop server would be
measuring the two together. The child is started with ``spawn`` (no inherited loop or locks),
reports its URL through a pipe when it is listening (no sleeping, no port polling), and stops
when the pipe closes: on exit from the block, and also if the parent dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import signal
from typing import TYPE_CHECKING

from .config import MockConfig
from .server import MockAPI

if TYPE_CHECKING:
    from collections.abc import Iterator
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess

__all__ = ["run_in_process"]

# How long the child may take to stop after its pipe closes before it is terminated, then killed.
_STOP_TIMEOUT_S = 10.0


@contextlib.contextmanager
def run_in_process(
    config: MockConfig | None = None, *, port: int = 0, start_timeout_s: float = 60.0
) -> Iterator[str]:
    """Serve the mock API from a child process on 127.0.0.1; yield its base URL.

    `port` 0 (the default) picks a free port.

    The child prints nothing. Leaving the block stops it (hung requests are released first)
    and waits for it to exit.

    >>> with run_in_process(MockConfig(latency_ms=0)) as base_url:  # doctest: +SKIP
    ...     requests.post(f"{base_url}/v1/echo", json={"n": 1})

    Raises:
        RuntimeError: the child did not report ready within `start_timeout_s`, or failed.
    """
    config = MockConfig() if config is None else config
    context = multiprocessing.get_context("spawn")
    parent_end, child_end = context.Pipe()
    process = context.Process(
        target=_child_main, args=(config, port, child_end), name="conveyor-mockapi", daemon=True
    )
    process.start()
    child_end.close()
    try:
        yield _await_ready(parent_end, process, start_timeout_s)
    finally:
        parent_end.close()  # the child's signal to stop
        process.join(_STOP_TIMEOUT_S)
        if process.is_alive():
            process.terminate()
            process.join(_STOP_TIMEOUT_S)
        if process.is_alive():  # pragma: no cover - a child that ignores SIGTERM
            process.kill()
            process.join()
        process.close()


def _await_ready(conn: Connection, process: BaseProcess, timeout_s: float) -> str:
    """Return the URL the child reports, or raise why it has none."""
    if not conn.poll(timeout_s):
        msg = f"the mock API process did not report ready within {timeout_s:g}s"
        raise RuntimeError(msg)
    try:
        kind, text = conn.recv()
    except EOFError:
        process.join(_STOP_TIMEOUT_S)
        msg = f"the mock API process exited before it was ready (exit code {process.exitcode})"
        raise RuntimeError(msg) from None
    if kind != "ready":
        msg = f"the mock API process failed to start: {text}"
        raise RuntimeError(msg)
    return str(text)


def _child_main(config: MockConfig, port: int, conn: Connection) -> None:
    """Serve until the pipe to the parent closes (the body of the child process)."""
    # Ctrl-C in a terminal reaches the whole process group; the parent decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        asyncio.run(_serve_until_closed(config, port, conn))
    except Exception as exc:  # reported to the parent, which raises; the child prints nothing
        with contextlib.suppress(OSError):
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


async def _serve_until_closed(config: MockConfig, port: int, conn: Connection) -> None:
    loop = asyncio.get_running_loop()
    closed = asyncio.Event()
    async with MockAPI(config, port=port) as api:
        # The pipe becomes readable when the parent closes its end (EOF), or dies.
        loop.add_reader(conn.fileno(), closed.set)
        loop.add_signal_handler(signal.SIGTERM, closed.set)
        try:
            conn.send(("ready", api.base_url))
            await closed.wait()
        finally:
            loop.remove_reader(conn.fileno())
            loop.remove_signal_handler(signal.SIGTERM)
