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
from conveyor.mockapi import AnthropicLimits, Faults, MockConfig, run_in_process, serve


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


async def echo_on_fresh_connections(base_url: str, count: int) -> dict[str, Any]:
    """POST `count` echoes, each on a new connection, then return /stats."""
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        for _ in range(count):
            async with session.post(f"{base_url}/v1/echo", json={"n": 1}) as response:
                assert response.status == 200
        async with session.get(f"{base_url}/stats") as response:
            stats: dict[str, Any] = await response.json()
            return stats


async def reset_then_stats(base_url: str) -> dict[str, Any]:
    """POST /stats/reset, then return /stats read on a new connection."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{base_url}/stats/reset") as response,
    ):
        assert response.status == 200
    async with aiohttp.ClientSession() as session, session.get(f"{base_url}/stats") as response:
        stats: dict[str, Any] = await response.json()
        return stats


def test_several_processes_pool_their_counters():
    """With processes=2 the port is served by both, and /stats on either counts every request.

    The 40 requests go on 40 connections, which the kernel spreads over the two processes (all
    on one: odds of 2**-39); a process counting only its own would report fewer.
    """
    with run_in_process(MockConfig(latency_ms=0.0), processes=2) as base_url:
        stats = asyncio.run(echo_on_fresh_connections(base_url, 40))
        assert (stats["requests"], stats["ok"], stats["in_flight"]) == (40, 40, 0)
        assert stats["active_s"] > 0.0
        after = asyncio.run(reset_then_stats(base_url))
        assert (after["requests"], after["ok"], after["active_s"]) == (0, 0, 0.0)
        again = asyncio.run(echo_on_fresh_connections(base_url, 6))
        assert again["requests"] == 6


def test_several_processes_refuse_a_rate_limited_config():
    """A strict window cannot be split between processes: processes>1 with rpm is refused."""
    with pytest.raises(ConfigError, match="processes=1"):  # noqa: SIM117
        with run_in_process(MockConfig(rpm=600), processes=2):
            pass
    with pytest.raises(ConfigError, match="whole number >= 1"):  # noqa: SIM117
        with run_in_process(MockConfig(), processes=0):
            pass


@pytest.mark.parametrize(
    "limits",
    [AnthropicLimits(rpm=50), AnthropicLimits(otpm=8_000), AnthropicLimits(spend_cap_tokens=9)],
)
def test_several_processes_refuse_anthropic_limits_and_a_spend_cap(limits):
    """Token buckets and a spend cap are one process's state: processes>1 is refused."""
    with pytest.raises(ConfigError, match="spend cap set"):  # noqa: SIM117
        with run_in_process(MockConfig(anthropic=limits), processes=2):
            pass


async def messages_on_fresh_connections(base_url: str, count: int) -> dict[str, Any]:
    """POST `count` Messages requests, each on a new connection, then return /stats."""
    payload = {"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        for _ in range(count):
            async with session.post(f"{base_url}/v1/messages", json=payload) as response:
                assert response.status in {200, 529}
        async with session.get(f"{base_url}/stats") as response:
            stats: dict[str, Any] = await response.json()
            return stats


def test_several_processes_pool_the_messages_routes_counters():
    """The Messages route's counters (admitted, 529s, tokens) are pooled like the others."""
    config = MockConfig(latency_ms=0.0, anthropic=AnthropicLimits(overloaded_rate=0.5), seed=2)
    with run_in_process(config, processes=2) as base_url:
        stats = asyncio.run(messages_on_fresh_connections(base_url, 40))
    assert (stats["requests"], stats["messages_admitted"]) == (40, 40)
    assert stats["ok"] + stats["overloaded"] == 40
    assert 0 < stats["overloaded"] < 40
    assert stats["messages_input_tokens"] == 40
