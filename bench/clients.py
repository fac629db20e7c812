"""Which HTTP client and loop the batch runner uses: aiohttp, httpx, pyreqwest, rnet.

Each client sends the same chat requests to the local mock API (its own processes, no
latency, no limits) over one connection pool, at concurrency 100, and reads every answer, on
asyncio's loop and on uvloop. Three interleaved rounds of 5,000 requests; the best round of
each counts, with the client's CPU time per request (all threads of the process: the Rust
clients' runtime threads included). The runner's own CPU comes on top of it: on two cores, a
client that costs less per request leaves more for everything else. pyreqwest and rnet wrap
Rust's reqwest (hyper); a client that is not installed is left out.

Run it with ``python bench/clients.py``.
"""

from __future__ import annotations

import os
import sys

# Run as a script, this folder comes first on sys.path, and its http.py would shadow the
# standard library's `http` (which aiohttp imports). Take the folder off the path.
_HERE = os.path.dirname(os.path.abspath(__file__))  # noqa: PTH100, PTH120 - before any import
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]  # noqa: PTH100

import asyncio
import importlib.util
import json
import time
from typing import Any

import aiohttp
import httpx
import uvloop

from conveyor.mockapi import MockConfig, run_in_process

N = 5_000
CONCURRENCY = 100
ROUNDS = 3
BODY = json.dumps(
    {"model": "mock", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 8}
).encode()
HEADERS = {"Content-Type": "application/json"}


async def with_aiohttp(url: str) -> int:
    ok = 0
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as session:
        sem = asyncio.Semaphore(CONCURRENCY)

        async def one() -> None:
            nonlocal ok
            async with sem, session.post(url, data=BODY, headers=HEADERS) as answer:
                await answer.read()
                ok += answer.status == 200

        await asyncio.gather(*(one() for _ in range(N)))
    return ok


async def with_httpx(url: str) -> int:
    ok = 0
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(limits=limits, timeout=30.0) as client:
        sem = asyncio.Semaphore(CONCURRENCY)

        async def one() -> None:
            nonlocal ok
            async with sem:
                answer = await client.post(url, content=BODY, headers=HEADERS)
                ok += answer.status_code == 200

        await asyncio.gather(*(one() for _ in range(N)))
    return ok


async def with_pyreqwest(url: str) -> int:
    from pyreqwest.client import ClientBuilder  # noqa: PLC0415 - optional

    ok = 0
    async with ClientBuilder().max_connections(CONCURRENCY).build() as client:
        sem = asyncio.Semaphore(CONCURRENCY)

        async def one() -> None:
            nonlocal ok
            request = client.post(url).body_bytes(BODY).headers(HEADERS).build_streamed()
            async with sem, request as answer:
                await answer.bytes()
                ok += answer.status == 200

        await asyncio.gather(*(one() for _ in range(N)))
    return ok


async def with_rnet(url: str) -> int:
    import rnet  # type: ignore[import-not-found,unused-ignore]  # noqa: PLC0415 - optional

    ok = 0
    client = rnet.Client()
    sem = asyncio.Semaphore(CONCURRENCY)

    async def one() -> None:
        nonlocal ok
        async with sem:
            answer = await client.request(rnet.Method.POST, url, body=BODY, headers=HEADERS)
            await answer.bytes()
            ok += answer.status == 200

    await asyncio.gather(*(one() for _ in range(N)))
    return ok


async def with_http1(url: str) -> int:
    from conveyor.http.http1 import Http1Transport  # noqa: PLC0415 - Conveyor's own

    ok = 0
    transport = Http1Transport(connect_timeout_s=10.0)
    sem = asyncio.Semaphore(CONCURRENCY)

    async def one() -> None:
        nonlocal ok
        async with sem:
            answer = await transport("POST", url, HEADERS, BODY)
            ok += answer.status == 200

    await asyncio.gather(*(one() for _ in range(N)))
    await transport.close()
    return ok


CLIENTS: dict[str, Any] = {
    name: fn
    for name, fn, module in (
        ("aiohttp", with_aiohttp, "aiohttp"),
        ("httpx", with_httpx, "httpx"),
        ("pyreqwest", with_pyreqwest, "pyreqwest"),
        ("rnet", with_rnet, "rnet"),
        ("conveyor http1", with_http1, "httptools"),
    )
    if importlib.util.find_spec(module) is not None
}
LOOPS: dict[str, Any] = {"asyncio": asyncio.run, "uvloop": uvloop.run}


def main() -> int:
    best: dict[tuple[str, str], tuple[float, float]] = {}
    with run_in_process(MockConfig(latency_ms=0.0), processes=2) as base_url:
        url = f"{base_url}/v1/chat/completions"
        for _ in range(ROUNDS):
            for name, client in CLIENTS.items():
                for loop, run in LOOPS.items():
                    wall, cpu = time.perf_counter(), time.process_time()
                    ok = run(client(url))
                    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                    assert ok == N, f"{name}: {ok} of {N} answered 200"
                    key = (name, loop)
                    if key not in best or wall < best[key][0]:
                        best[key] = (wall, cpu)
    print(
        f"{N:,} chat requests, concurrency {CONCURRENCY}, mock API at latency 0; best of {ROUNDS}"
    )
    print(f"{'client':<14} {'loop':<8} {'requests/s':>11} {'CPU µs/request':>15}")
    for (name, loop), (wall, cpu) in best.items():
        print(f"{name:<14} {loop:<8} {N / wall:>11,.0f} {cpu / N * 1e6:>15,.0f}")
    base = best["aiohttp", "asyncio"][1]
    for (name, loop), (_, cpu) in best.items():
        print(f"{name} on {loop}: {cpu / base:.2f}x the CPU per request of aiohttp on asyncio")
    return 0


if __name__ == "__main__":
    sys.exit(main())
