"""The mock API's ceiling: requests per second it answers, served from a process of its own.

The client is aiohttp with 200 connections, in this process; the server runs with no latency,
no limits and no faults, through `conveyor.mockapi.run_in_process`. Each route is measured side
by side with a bare aiohttp server (same low-level `aiohttp.web.Server`, answering a constant
``{}``) in a process of its own: the bare server is what aiohttp and this client can do on this
machine at all, and the gap to it is what the mock's own logic (parsing, the window, counters,
the answer) costs.

Rounds are interleaved and each contender's best round counts (as `timeit` does: the best round
is the one least disturbed by the neighbours on a shared machine). Every round is bounded by a
request count and a deadline. The CPU time of each process is reported too: when the server's
process is near 100% of a core it is the bottleneck; when it is not (the aiohttp client costs
more per request than the server, and on 2 cores they compete), the measured rate is a floor of
the server's ceiling, and the server's CPU time per answer gives the rate one full core would
sustain.

Run it with ``.venv/bin/python bench/mockapi_ceiling.py``.
"""

from __future__ import annotations

import os
import sys

# Run as a script, this folder comes first on sys.path, and its http.py would shadow the
# standard library's `http` (which aiohttp imports). Take the folder off the path.
_HERE = os.path.dirname(os.path.abspath(__file__))  # noqa: PTH100, PTH120 - before any import
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]  # noqa: PTH100

import argparse
import asyncio
import contextlib
import multiprocessing
import platform
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web

from conveyor.mockapi import MockConfig, run_in_process

if TYPE_CHECKING:
    from collections.abc import Iterator
    from multiprocessing.connection import Connection

CHAT_BODY: dict[str, object] = {
    "model": "mock-1",
    "messages": [{"role": "user", "content": "Say hello, twice."}],
}
ECHO_BODY: dict[str, object] = {"id": 1, "payload": "hello"}


def cpu_s(pid: int) -> float:
    """Return the CPU seconds (user + system) process `pid` has used, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def load(
    url: str, body: dict[str, object], *, requests: int, connections: int, deadline_s: float
) -> tuple[int, int, float]:
    """POST `body` to `url` up to `requests` times over `connections`; return (ok, failed, s)."""
    remaining = requests
    ok = failed = 0
    connector = aiohttp.TCPConnector(limit=connections, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal remaining, ok, failed
            while remaining > 0:
                remaining -= 1
                try:
                    async with session.post(url, json=body) as response:
                        await response.read()
                        if response.status == 200:
                            ok += 1
                        else:
                            failed += 1
                except aiohttp.ClientError:
                    failed += 1

        start = time.perf_counter()
        async with asyncio.timeout(deadline_s):
            await asyncio.gather(*(worker() for _ in range(connections)))
        return ok, failed, time.perf_counter() - start


def bare_child(conn: Connection) -> None:
    """Serve a constant ``{}`` with aiohttp's low-level server until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    async def handler(request: web.BaseRequest) -> web.Response:
        await request.read()
        return web.Response(body=b"{}", content_type="application/json")

    async def main() -> None:
        runner = web.ServerRunner(web.Server(handler, access_log=None), handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        closed = asyncio.Event()
        asyncio.get_running_loop().add_reader(conn.fileno(), closed.set)
        host, port = runner.addresses[0][:2]
        conn.send(f"http://{host}:{port}")
        await closed.wait()
        await runner.cleanup()

    asyncio.run(main())


@contextlib.contextmanager
def bare_server() -> Iterator[tuple[str, int]]:
    """Run `bare_child` in a spawned process; yield its URL and pid."""
    context = multiprocessing.get_context("spawn")
    parent_end, child_end = context.Pipe()
    process = context.Process(target=bare_child, args=(child_end,), daemon=True)
    process.start()
    child_end.close()
    try:
        if not parent_end.poll(60):
            msg = "the bare server did not start within 60 s"
            raise RuntimeError(msg)
        assert process.pid is not None
        yield str(parent_end.recv()), process.pid
    finally:
        parent_end.close()
        process.join(10)
        if process.is_alive():
            process.kill()
            process.join()


def only_child_pid() -> int:
    """Return the pid of this process's one live child (the server just started)."""
    (child,) = multiprocessing.active_children()
    assert child.pid is not None
    return child.pid


def measure(
    base_url: str, pid: int, path: str, body: dict[str, object], args: argparse.Namespace
) -> dict[str, float]:
    """Run one bounded round against `base_url + path` served by process `pid`."""
    server_cpu0, client_cpu0 = cpu_s(pid), time.process_time()
    ok, failed, elapsed = asyncio.run(
        load(
            base_url + path,
            body,
            requests=args.requests,
            connections=args.connections,
            deadline_s=args.deadline_s,
        )
    )
    return {
        "rps": ok / elapsed,
        "ok": ok,
        "failed": failed,
        "server_cpu": (cpu_s(pid) - server_cpu0) / elapsed,
        "client_cpu": (time.process_time() - client_cpu0) / elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000, help="per round (20000)")
    parser.add_argument("--connections", type=int, default=200, help="client connections (200)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (3)")
    parser.add_argument("--deadline-s", type=float, default=30.0, help="per round (30)")
    args = parser.parse_args()

    print(
        f"python {platform.python_version()}, aiohttp {aiohttp.__version__},"
        f" {os.cpu_count()} CPUs; {args.requests} requests x {args.rounds} rounds,"
        f" {args.connections} connections; server in its own process"
    )
    contenders: dict[str, tuple[str, str, dict[str, object]]] = {
        "mock /v1/chat/completions": ("mock", "/v1/chat/completions", CHAT_BODY),
        "mock /v1/echo": ("mock", "/v1/echo", ECHO_BODY),
        "bare aiohttp (constant {})": ("bare", "/", ECHO_BODY),
    }
    best: dict[str, dict[str, float]] = {}
    config = MockConfig(latency_ms=0.0)
    with run_in_process(config) as mock_url:
        mock_pid = only_child_pid()
        with bare_server() as (bare_url, bare_pid):
            servers = {"mock": (mock_url, mock_pid), "bare": (bare_url, bare_pid)}
            for url, _ in servers.values():  # warm each server's code paths once
                asyncio.run(
                    load(url + "/v1/echo", ECHO_BODY, requests=1000, connections=50, deadline_s=30)
                )
            for round_no in range(1, args.rounds + 1):
                for name, (server, path, body) in contenders.items():
                    url, pid = servers[server]
                    figures = measure(url, pid, path, body, args)
                    print(
                        f"  round {round_no} {name:28} {figures['rps']:8,.0f} req/s"
                        f"  (failed {figures['failed']:.0f}; CPU: server"
                        f" {figures['server_cpu']:.0%}, client {figures['client_cpu']:.0%})"
                    )
                    if name not in best or figures["rps"] > best[name]["rps"]:
                        best[name] = figures
    print("best rounds (server CPU per answer; the rate one full core would sustain at that cost):")
    bare = best["bare aiohttp (constant {})"]["rps"]
    for name, figures in best.items():
        per_answer_s = figures["server_cpu"] / figures["rps"]
        print(
            f"  {name:28} {figures['rps']:8,.0f} req/s  ({figures['rps'] / bare:.2f}x bare);"
            f" server {per_answer_s * 1e6:4.0f} us/answer -> {1 / per_answer_s:7,.0f} req/s"
        )


if __name__ == "__main__":
    main()
