"""The job service under load: a 100,000-item job at full speed while clients watch it.

Two runs of the same job on ``conveyor serve``'s default set-up (SQLite, the in-process
worker, uvicorn), each on a fresh store in its own server process:

1. alone: no client but the one that submits it;
2. watched: 200 Server-Sent Events subscribers on the job, and status polling
   (``GET /v1/jobs/{id}``) at 500 requests per second, from another process.

The task stands for an API call: it waits ``--latency-ms`` (10) and returns, at
``--concurrency`` (200) in flight, so "full speed" is what those allow (20,000/s), and the
worker's CPU use is real. Targets: throughput drop < 15%, status p99 < 50 ms, every stream
ends with the final state. Prints the figures and PASS/FAIL lines. Every loop is bounded in
count and time. ``python bench/service.py [--items N] [--subscribers N] [--rps N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import aiohttp

TIMEOUT_S = 300


def _serve(db: str, port: int, latency_ms: float) -> None:
    # Imported here: main() first takes bench/ (and its http.py) off sys.path.
    import uvicorn  # noqa: PLC0415

    from conveyor.jobs import App  # noqa: PLC0415
    from conveyor.service import ServiceConfig, create_app  # noqa: PLC0415

    app = App()

    @app.task("call")
    async def call(item: Any) -> Any:
        await asyncio.sleep(latency_ms / 1000)
        return item

    cfg = ServiceConfig(store=f"sqlite:///{db}", keys_file=None, files_dir=Path(db).parent)
    uvicorn.run(create_app(cfg, app=app), host="127.0.0.1", port=port, log_level="warning")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _wait_up(session: aiohttp.ClientSession, base: str) -> None:
    for _ in range(300):  # 30 s at most
        try:
            async with session.get(f"{base}/v1/service") as r:
                if r.status == 200:
                    return
        except OSError:  # aiohttp's connection errors are OSErrors
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError("the server did not start in 30 s")


async def _subscriber(session: aiohttp.ClientSession, url: str, got_final: list[bool]) -> None:
    final = False
    async with session.get(url) as r:
        event = ""
        async for raw in r.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "done":
                final = json.loads(line[6:])["status"] == "completed"
    got_final.append(final)


async def _poller(
    session: aiohttp.ClientSession, url: str, rps: int, stop: asyncio.Event, lat: list[float]
) -> None:
    interval = 1 / rps
    start = time.perf_counter()
    n = 0
    pending: set[asyncio.Task[None]] = set()

    async def one() -> None:
        t = time.perf_counter()
        async with session.get(url) as r:
            await r.read()
        lat.append(time.perf_counter() - t)

    while not stop.is_set() and n < rps * TIMEOUT_S:
        n += 1
        task = asyncio.create_task(one())
        pending.add(task)
        task.add_done_callback(pending.discard)
        delay = start + n * interval - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
    await asyncio.gather(*pending, return_exceptions=True)


async def _run(args: argparse.Namespace, watched: bool) -> dict[str, Any]:
    import aiohttp  # noqa: PLC0415 - after main() took bench/ (and its http.py) off sys.path

    with tempfile.TemporaryDirectory() as tmp:
        port = _free_port()
        server = subprocess.Popen(  # noqa: S603, ASYNC220 - this file as the server; starts once
            [sys.executable, __file__, "--serve", f"{tmp}/jobs.db", str(port), str(args.latency_ms)]
        )
        base = f"http://127.0.0.1:{port}"
        connector = aiohttp.TCPConnector(limit=0)
        timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
        try:
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
                await _wait_up(session, base)
                items = list(range(args.items))
                body = {
                    "task": "call",
                    "items": items,
                    "options": {"concurrency": args.concurrency},
                }
                async with session.post(f"{base}/v1/jobs", json=body) as r:
                    job = await r.json()
                url = f"{base}/v1/jobs/{job['id']}"
                got_final: list[bool] = []
                lat: list[float] = []
                stop = asyncio.Event()
                tasks = []
                if watched:
                    tasks = [
                        asyncio.create_task(_subscriber(session, f"{url}/events", got_final))
                        for _ in range(args.subscribers)
                    ]
                    tasks.append(asyncio.create_task(_poller(session, url, args.rps, stop, lat)))
                deadline = time.monotonic() + TIMEOUT_S
                while time.monotonic() < deadline:
                    async with session.get(url) as r:
                        job = await r.json()
                    if job["status"] in {"completed", "failed", "cancelled"}:
                        break
                    await asyncio.sleep(0.2)
                stop.set()
                async with asyncio.timeout(30):
                    await asyncio.gather(*tasks)
        finally:
            server.terminate()
            server.wait(10)
    s = job["summary"]
    lat.sort()
    return {
        "status": job["status"],
        "throughput": s["throughput_per_s"],
        "duration_s": s["duration_s"],
        "p50_ms": 1000 * lat[len(lat) // 2] if lat else float("nan"),
        "p99_ms": 1000 * lat[int(0.99 * (len(lat) - 1))] if lat else float("nan"),
        "polls": len(lat),
        "streams": len(got_final),
        "final": sum(got_final),
    }


def main() -> int:
    # bench/http.py would shadow the standard library's http (aiohttp imports it).
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--subscribers", type=int, default=200)
    parser.add_argument("--rps", type=int, default=500)
    parser.add_argument("--latency-ms", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--serve", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _serve(args.serve[0], int(args.serve[1]), float(args.serve[2]))
        return 0
    print(
        f"bench/service.py: {args.items:,} items, task {args.latency_ms:g} ms at concurrency"
        f" {args.concurrency} (ceiling {args.concurrency / args.latency_ms * 1000:,.0f}/s)"
    )
    alone = asyncio.run(_run(args, watched=False))
    print(f"alone:   {alone['throughput']:>9,.0f} items/s  ({alone['duration_s']:.1f} s)")
    watched = asyncio.run(_run(args, watched=True))
    print(
        f"watched: {watched['throughput']:>9,.0f} items/s  ({watched['duration_s']:.1f} s) with"
        f" {args.subscribers} SSE subscribers and {watched['polls']:,} status polls"
        f" ({watched['polls'] / max(watched['duration_s'], 1e-9):,.0f}/s)"
    )
    drop = 1 - watched["throughput"] / alone["throughput"]
    print(f"throughput drop: {100 * drop:.1f}%")
    print(f"status latency: p50 {watched['p50_ms']:.1f} ms, p99 {watched['p99_ms']:.1f} ms")
    print(f"streams that ended with the final state: {watched['final']}/{watched['streams']}")
    checks = [
        ("throughput drop < 15%", drop < 0.15),
        ("status p99 < 50 ms", watched["p99_ms"] < 50),
        ("every stream got the final state", watched["final"] == args.subscribers),
        ("both jobs completed", alone["status"] == watched["status"] == "completed"),
    ]
    for name, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}: {name}")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
