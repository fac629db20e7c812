"""The mock API outside the test's loop: in a child process, and in the foreground."""

import asyncio
import os
import signal
import subprocess
import sys
import time
from typing import Any

import aiohttp
import pytest

from conveyor.errors import ConfigError
from conveyor.mockapi import Faults, MockConfig, run_in_process, serve


async def call_and_stats(base_url: str) -> tuple[int, Any]:
    """POST one echo and return its status and then the /stats JSON."""
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{base_url}/v1/echo", json={"n": 1}) as response:
            status = response.status
        async with session.get(f"{base_url}/stats") as response:
            return status, await response.json()


async def refused(base_url: str) -> bool:
    """Return whether connecting to `base_url` is refused (nothing listens any more)."""
    async with aiohttp.ClientSession() as session:
        try:
            async with session.get(f"{base_url}/stats"):
                return False
        except aiohttp.ClientConnectorError:
            return True


def test_process_mode_serves_and_stops_cleanly():
    """run_in_process yields a loopback URL that answers, and nothing listens after the block."""
    with run_in_process(MockConfig(latency_ms=1.0, rpm=600)) as base_url:
        assert base_url.startswith("http://127.0.0.1:")
        status, stats = asyncio.run(call_and_stats(base_url))
    assert status == 200
    assert (stats["requests"], stats["ok"]) == (1, 1)
    assert asyncio.run(refused(base_url))


def test_process_mode_stops_despite_hung_requests():
    """Leaving the block while a request hangs stops the child promptly; the client is cut off."""
    config = MockConfig(latency_ms=1.0, faults=Faults(hang_rate=1.0, hang_s=300.0))

    async def main() -> tuple[tuple[BaseException | aiohttp.ClientResponse], float]:
        async with aiohttp.ClientSession() as session:
            with run_in_process(config) as base_url:
                call = asyncio.create_task(session.post(f"{base_url}/v1/echo", json={}))
                async with asyncio.timeout(10.0):
                    hung = 0
                    while hung < 1:
                        async with session.get(f"{base_url}/stats") as response:
                            hung = (await response.json())["hung"]
                stopping = time.perf_counter()
            stopped_in_s = time.perf_counter() - stopping
            async with asyncio.timeout(5.0):
                return await asyncio.gather(call, return_exceptions=True), stopped_in_s

    (result,), stopped_in_s = asyncio.run(main())
    assert isinstance(result, aiohttp.ClientConnectionError)
    # Releasing the hang and joining the child takes well under a second; 5 s is the
    # pathological bound, far below the 300 s the hang would otherwise last.
    assert stopped_in_s < 5.0


def test_process_mode_reports_a_child_that_cannot_start():
    """A child that fails to bind says why, instead of hanging or printing."""
    with run_in_process(MockConfig()) as base_url:
        port = int(base_url.rsplit(":", 1)[1])
        # A second server on the same port must fail to bind; the pipe carries the error.
        with pytest.raises(RuntimeError, match="failed to start: OSError"):  # noqa: SIM117
            with run_in_process(MockConfig(), port=port):
                pass


def test_serve_runs_in_the_foreground_until_sigterm():
    """serve() reports its URL once listening, answers, and exits 0 on SIGTERM."""
    script = (
        "from conveyor.mockapi import MockConfig, serve\n"
        "serve(MockConfig(latency_ms=1.0), port=0, ready=lambda url: print(url, flush=True))\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=os.environ.copy()
    )
    try:
        assert child.stdout is not None
        base_url = child.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:")
        status, _ = asyncio.run(call_and_stats(base_url))
        assert status == 200
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=10) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()


def test_serve_refuses_a_public_host_before_binding():
    """serve() on a non-loopback host fails at once unless allow_remote=True."""
    with pytest.raises(ConfigError, match="--allow-remote"):
        serve(MockConfig(), host="0.0.0.0")  # noqa: S104
