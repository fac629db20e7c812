"""The mock API in processes of its own, so that it shares neither the loop nor the CPU core.

`run_in_process` is what benchmarks use: a client measured against an in-loop server would be
measuring the two together. Each child is started with ``spawn`` (no inherited loop or locks),
reports its URL through a pipe when it is listening (no sleeping, no port polling), and stops
when the pipe closes: on exit from the block, and also if the parent dies.

With ``processes=N``, N children serve one port (``SO_REUSEPORT``) and pool their counters in
shared memory (see `conveyor.mockapi.shared`): one process answers about 2,000 requests a
second before its own queueing shows in the latency. A strict rate-limit window, a token
bucket or a spend cap cannot be split between processes, so a config with limits runs in one.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import multiprocessing
import signal
from typing import TYPE_CHECKING

from ..errors import ConfigError
from .config import MockConfig
from .loop import run_loop
from .server import MockAPI
from .shared import SharedCounters

if TYPE_CHECKING:
    from collections.abc import Iterator
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess

__all__ = ["run_in_process"]

# How long the child may take to stop after its pipe closes before it is terminated, then killed.
_STOP_TIMEOUT_S = 10.0


@contextlib.contextmanager
def run_in_process(
    config: MockConfig | None = None,
    *,
    port: int = 0,
    processes: int = 1,
    start_timeout_s: float = 60.0,
) -> Iterator[str]:
    """Serve the mock API from child processes on 127.0.0.1; yield its base URL.

    `port` 0 (the default) picks a free port. `processes` > 1 serves the port from that many
    processes (for a config without rate limits; each draws its own seeded faults).

    The child prints nothing. Leaving the block stops it (hung requests are released first)
    and waits for it to exit.

    >>> with run_in_process(MockConfig(latency_ms=0)) as base_url:  # doctest: +SKIP
    ...     requests.post(f"{base_url}/v1/echo", json={"n": 1})

    Raises:
        RuntimeError: the child did not report ready within `start_timeout_s`, or failed.
    """
    config = MockConfig() if config is None else config
    _check_processes(config, processes)
    context = multiprocessing.get_context("spawn")
    children: list[tuple[BaseProcess, Connection]] = []
    shared = SharedCounters.create(processes) if processes > 1 else None
    try:
        for index in range(processes):
            own = config
            if index and config.seed is not None:
                own = dataclasses.replace(config, seed=config.seed * 1_000 + index)
            spec = _Child(
                own, port, processes > 1, shared.name if shared else None, processes, index
            )
            parent_end, child_end = context.Pipe()
            process = context.Process(
                target=_child_main, args=(spec, child_end), name="conveyor-mockapi", daemon=True
            )
            process.start()
            child_end.close()
            children.append((process, parent_end))
            url = _await_ready(parent_end, process, start_timeout_s)
            if index == 0:
                base_url = url
                port = int(url.rsplit(":", 1)[1])  # the others join the port the first got
        yield base_url
    finally:
        for _, end in children:
            end.close()  # the child's signal to stop
        for child, _ in children:
            _stop(child)
        if shared is not None:
            shared.close()
            shared.unlink()


def _check_processes(config: MockConfig, processes: int) -> None:
    if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
        msg = f"run_in_process(processes={processes!r}): use a whole number >= 1"
        raise ConfigError(msg)
    limited = config.rpm is not None or config.tpm is not None or config.anthropic.limited
    if processes > 1 and limited:
        msg = (
            f"run_in_process(processes={processes}) with rate limits or a spend cap set (rpm,"
            " tpm, or AnthropicLimits' rpm, itpm, otpm, spend_cap_tokens): a limit cannot be"
            " split between processes; use processes=1 (a rate-limited API is slow enough"
            " for one)"
        )
        raise ConfigError(msg)


def _stop(process: BaseProcess) -> None:
    process.join(_STOP_TIMEOUT_S)
    if process.is_alive():
        process.terminate()
        process.join(_STOP_TIMEOUT_S)
    if process.is_alive():  # pragma: no cover - a child that ignores SIGTERM
        process.kill()
        process.join()
    process.close()


@dataclasses.dataclass(frozen=True, slots=True)
class _Child:
    """What one child serves, and how it joins the others."""

    config: MockConfig
    port: int
    reuse_port: bool
    shared_name: str | None
    processes: int
    index: int


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


def _child_main(spec: _Child, conn: Connection) -> None:
    """Serve until the pipe to the parent closes (the body of the child process)."""
    # Ctrl-C in a terminal reaches the whole process group; the parent decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        run_loop(_serve_until_closed(spec, conn))
    except Exception as exc:  # reported to the parent, which raises; the child prints nothing
        with contextlib.suppress(OSError):
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


async def _serve_until_closed(spec: _Child, conn: Connection) -> None:
    loop = asyncio.get_running_loop()
    closed = asyncio.Event()
    shared = None
    if spec.shared_name is not None:
        shared = SharedCounters.attach(spec.shared_name, spec.processes, spec.index)
    api = MockAPI(spec.config, port=spec.port, reuse_port=spec.reuse_port, shared=shared)
    async with api:
        # The pipe becomes readable when the parent closes its end (EOF), or dies.
        loop.add_reader(conn.fileno(), closed.set)
        loop.add_signal_handler(signal.SIGTERM, closed.set)
        try:
            conn.send(("ready", api.base_url))
            await closed.wait()
        finally:
            loop.remove_reader(conn.fileno())
            loop.remove_signal_handler(signal.SIGTERM)
    if shared is not None:
        shared.close()
