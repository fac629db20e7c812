"""Many workers on one PostgreSQL store, limits shared in Redis: bench/scale.py.

Part 1, **shared limits**. Four worker processes run one job of 20,000 calls to the local mock
API, which enforces a requests limit and a tokens limit over a strict 1-second sliding window
(both bind: half the calls are tiny, half large). Three ways side by side, on the same job:

- ``redis``: Conveyor's limiter held in Redis, the whole limit shared by the four workers;
- ``quarter``: each worker a local limiter with a quarter of the limit (Celery's rate_limit);
- ``whole``: each worker a local limiter with the whole limit (what a per-process limiter does
  when nobody divides it).

Each prints the 429s the mock API sent and the utilisation: the rate the limits allow (the
ideal time of the job, computed as in bench/limits.py) over the rate reached, from the job's
submission to its end. Targets for ``redis``: zero 429s, utilisation >= 0.95.

Part 2, **no-op items on PostgreSQL**: items settled and persisted per second with 1, 2 and 4
worker processes, from the job's submission (the workers already started and idle: LISTEN
wakes them) to its completion. In the same run, pgqueuer (a PostgreSQL job queue) does the same
work as one job per item with 1 and 4 consumer processes. Target: >= 20,000 items/s with 4.

Run it with ``python bench/scale.py`` (PostgreSQL and Redis on 127.0.0.1; ``--quick`` for a
smaller run). Worker processes are this script run with ``--worker``.
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
import math
import random
import subprocess
import time
import uuid
from typing import Any

import aiohttp
import asyncpg

from conveyor.engine.context import attempt_slot
from conveyor.engine.sendtime import send_time_trace
from conveyor.jobs import App, Jobs
from conveyor.jobs.stores.postgres import PostgresStore
from conveyor.jobs.worker import Worker, WorkerOptions
from conveyor.limits.limiter import Limiter
from conveyor.limits.redis_limiter import RedisLimits, share_limits
from conveyor.mockapi import MockConfig, run_in_process

PG = os.environ.get("CONVEYOR_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
REDIS = os.environ.get("CONVEYOR_BENCH_REDIS", "redis://127.0.0.1:6379/0")
WORKERS = 4
LATENCY_MS = 50.0
WINDOW_S = 1.0
RPS = 800  # requests per second (48,000 per minute)
TPS = 120_000  # tokens per second: with a mean cost of 183, about 655 calls per second
CONCURRENCY = 100  # per worker
ATTEMPTS = 50  # per item: a 429 is retried after its Retry-After


# -- worker processes ----------------------------------------------------------------------


class HttpError(Exception):
    """A non-200 answer, shaped like an HTTP client's error (status_code, headers)."""

    def __init__(self, status: int, headers: dict[str, str]) -> None:
        super().__init__(f"HTTP {status}")
        self.status_code = status
        self.headers = headers


def build_app(mode: str, mock: str, prefix: str) -> tuple[App, list[Any]]:
    """The worker's app: `call` (one mock API call through the limiter) and `noop`."""
    share = {"redis": 1.0, "whole": 1.0, "quarter": 1.0 / WORKERS}.get(mode, 1.0)
    limiter = Limiter(
        "mock",
        requests_per_second=RPS * share,
        tokens_per_second=TPS * share,
        window_s=WINDOW_S,
    )
    app = App(limiters=[limiter])
    closers: list[Any] = []
    if mode == "redis":
        limits = RedisLimits(REDIS, prefix=prefix)
        share_limits(app, limits)
        closers.append(limits.aclose)
    shared = app.limiter("mock")
    assert shared is not None
    session: dict[str, aiohttp.ClientSession] = {}
    body = {"model": "mock", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}

    async def call(item: dict[str, int]) -> int:
        if "s" not in session:
            connector = aiohttp.TCPConnector(limit=CONCURRENCY)
            # Admissions dated when the request's headers go out, as the jobs http task does:
            # the engine holds the attempt's slots (limiters= below) in current_slots.
            session["s"] = aiohttp.ClientSession(
                connector=connector, trace_configs=[send_time_trace()]
            )
            closers.append(session["s"].close)
        headers = {"x-mock-cost": str(item["cost"])}
        url = f"{mock}/v1/chat/completions"
        async with session["s"].post(url, json=body, headers=headers) as r:
            await r.read()
            if r.status != 200:
                raise HttpError(r.status, dict(r.headers))
        attempt_slot(shared).settle(item["cost"])
        return item["cost"]

    # Through the engine's limiters: it acquires the slot (cost: the item's tokens) before
    # each attempt, sets it in current_slots, and releases it with the attempt's outcome (a
    # 429's Retry-After pauses the limiter).
    app.add_task("call", call, limiters=["mock"], cost=lambda item: float(item["cost"]))

    @app.task("noop")
    async def noop(item: int) -> int:
        return item

    return app, closers


async def worker_main(args: argparse.Namespace) -> None:
    app, closers = build_app(args.mode, args.mock or "", args.prefix or "")
    store = PostgresStore(args.store, max_size=3)
    options = WorkerOptions(
        claim_size=args.claim_size, batch_size=1000, flush_interval_s=0.1, poll_interval_s=5.0
    )
    worker = Worker(store, app, options=options)
    await store.any_active()  # connected before saying ready
    loop = asyncio.get_running_loop()
    import signal  # noqa: PLC0415

    loop.add_signal_handler(signal.SIGTERM, worker.stop)
    print("ready", flush=True)
    try:
        await worker.run()
    finally:
        for close in closers:
            await close()
        await store.close()
        limiter = app.limiter("mock")
        dating = limiter.answer_dating if limiter is not None else None
        if dating is not None:  # what dating calls by their answers moved, for the report
            print(f"dating {dating.moved} {dating.moved_s}", flush=True)


async def pgq_main(args: argparse.Namespace) -> None:
    from pgqueuer import AsyncpgDriver, QueueManager  # noqa: PLC0415
    from pgqueuer.queries import Queries  # noqa: PLC0415

    conn = await asyncpg.connect(PG, server_settings={"search_path": args.schema})
    qm = QueueManager(Queries(AsyncpgDriver(conn)))

    @qm.entrypoint("noop")
    async def noop(_job: Any) -> None:
        return None

    print("ready", flush=True)
    await qm.run(batch_size=args.claim_size)


# -- the measuring process -----------------------------------------------------------------


def spawn(*more: str) -> subprocess.Popen[bytes]:
    command = [sys.executable, os.path.abspath(__file__), *more]  # noqa: PTH100
    p = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout is not None
    line = p.stdout.readline()
    if line.strip() != b"ready":
        p.kill()
        _, err = p.communicate(timeout=10)
        msg = f"a worker did not start: {line!r} {err.decode()[-2000:]}"
        raise RuntimeError(msg)
    return p


def stop(processes: list[subprocess.Popen[bytes]]) -> list[str]:
    """Stop the processes; return what each printed after "ready"."""
    for p in processes:
        if p.poll() is None:
            p.terminate()
    printed = []
    for p in processes:
        try:
            out, _ = p.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            out, _ = p.communicate(timeout=10)
        printed.append(out.decode(errors="replace"))
    return printed


def moved_by_answers(printed: list[str]) -> tuple[int, float]:
    """Calls the workers' limiters moved by their answers, and the seconds moved in all."""
    moved, seconds = 0, 0.0
    for text in printed:
        for line in text.splitlines():
            if line.startswith("dating "):
                _, count, total = line.split()
                moved += int(count)
                seconds += float(total)
    return moved, seconds


async def drop_schema(schema: str) -> None:
    conn = await asyncpg.connect(PG)
    await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    await conn.close()


def costs(n: int, seed: int = 1) -> list[int]:
    rng = random.Random(seed)
    values = [rng.randint(10, 30) if i % 2 else rng.randint(300, 390) for i in range(n)]
    rng.shuffle(values)
    return values


def ideal_s(values: list[int]) -> float:
    """The least time the limits allow (see bench/limits.py): whole windows, one latency."""
    windows = max(len(values) / (RPS * WINDOW_S), sum(values) / (TPS * WINDOW_S))
    return (math.ceil(windows - 1e-9) - 1) * WINDOW_S + LATENCY_MS / 1000


async def run_job(
    store: str, task: str, items: list[Any], *, concurrency: int, deadline_s: float
) -> tuple[float, Any]:
    """Submit, then wait for the job's end (or the deadline: then cancel it)."""
    async with Jobs(store) as jobs:
        job = await jobs.submit(task, items, concurrency=concurrency, attempts=ATTEMPTS)
        started = time.perf_counter()
        while True:
            current = await jobs.get(job.id)
            if current.done:
                return time.perf_counter() - started, current
            if time.perf_counter() - started > deadline_s:
                await jobs.cancel(job.id)
                return time.perf_counter() - started, await jobs.get(job.id)
            await asyncio.sleep(0.01)


async def mock_stats(base_url: str, *, reset: bool = False) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        if reset:
            async with session.post(f"{base_url}/stats/reset") as r:
                await r.read()
        async with session.get(f"{base_url}/stats") as r:
            result: dict[str, Any] = await r.json()
            return result


def part_limits(n: int) -> list[tuple[str, bool]]:
    values = costs(n)
    ideal = ideal_s(values)
    allowed = n / ideal
    print(f"== shared limits: {WORKERS} workers, one job of {n:,} calls to the mock API")
    print(
        f"   limits {RPS}/s requests and {TPS:,}/s tokens over a strict {WINDOW_S:g} s window;"
        f" mean cost {sum(values) / n:.0f}; allowed {allowed:,.0f} calls/s (ideal {ideal:.1f} s)"
    )
    config = MockConfig(latency_ms=LATENCY_MS, rpm=RPS * 60, tpm=TPS * 60, window_s=WINDOW_S)
    rows: list[dict[str, Any]] = []
    with run_in_process(config) as mock:
        for mode in ("redis", "quarter", "whole"):
            schema = f"conveyor_bench_{uuid.uuid4().hex[:8]}"
            store = f"{PG}?schema={schema}"
            prefix = f"conveyor-bench:{uuid.uuid4().hex[:8]}"
            asyncio.run(PostgresStore(store).upgrade())
            time.sleep(WINDOW_S * 1.5)  # the mock's window empties between contenders
            asyncio.run(mock_stats(mock, reset=True))
            workers = [
                spawn("--worker", "--mode", mode, "--store", store, "--mock", mock,
                      "--prefix", prefix, "--claim-size", "100")
                for _ in range(WORKERS)
            ]  # fmt: skip
            try:
                elapsed, job = asyncio.run(
                    run_job(
                        store,
                        "call",
                        [{"cost": c} for c in values],
                        concurrency=CONCURRENCY,
                        deadline_s=max(3 * ideal, 30.0),
                    )
                )
            finally:
                printed = stop(workers)
                asyncio.run(drop_schema(schema))
            stats = asyncio.run(mock_stats(mock))
            moved, moved_s = moved_by_answers(printed)
            done = job.counts.succeeded
            rate = done / elapsed
            rows.append(
                {"mode": mode, "elapsed": elapsed, "done": done, "status": job.status,
                 "429": stats["rate_limited"], "rate": rate, "util": rate / allowed}
            )  # fmt: skip
            r = rows[-1]
            print(
                f"   {mode:8} {r['status']:10} {done:>7,} ok in {elapsed:6.1f} s"
                f"  {rate:7,.0f}/s  utilisation {r['util']:.3f}  429s {r['429']:,}"
                f"  moved by answers {moved:,} (mean {1000 * moved_s / max(moved, 1):.1f} ms)"
            )
    ours = rows[0]
    print()
    print(f"{'approach':34}{'429s':>8}{'utilisation':>13}{'seconds':>9}")
    names = {
        "redis": "Conveyor, limits shared in Redis",
        "quarter": "a quarter of the limit each",
        "whole": "the whole limit each",
    }
    for r in rows:
        print(f"{names[r['mode']]:34}{r['429']:>8,}{r['util']:>13.3f}{r['elapsed']:>9.1f}")
    return [
        (f"shared limits: zero 429s (got {ours['429']})", ours["429"] == 0),
        (f"shared limits: utilisation >= 0.95 (got {ours['util']:.3f})", ours["util"] >= 0.95),
        (f"shared limits: job completed ({ours['status']})", ours["status"] == "completed"),
    ]


def part_noop(n: int, pgq_n: int) -> list[tuple[str, bool]]:
    print(f"\n== no-op items on PostgreSQL: one job of {n:,} items; pgqueuer {pgq_n:,} jobs")
    results: dict[str, float] = {}
    for count in (1, 2, 4):
        schema = f"conveyor_bench_{uuid.uuid4().hex[:8]}"
        store = f"{PG}?schema={schema}"
        asyncio.run(PostgresStore(store).upgrade())
        workers = [
            spawn("--worker", "--mode", "noop", "--store", store, "--claim-size", "1000")
            for _ in range(count)
        ]
        try:
            elapsed, job = asyncio.run(
                run_job(store, "noop", list(range(n)), concurrency=1000, deadline_s=120)
            )
        finally:
            stop(workers)
            asyncio.run(drop_schema(schema))
        assert job.counts.succeeded == n, (job.status, job.error, job.counts)
        results[f"conveyor x{count}"] = n / elapsed
        print(f"   conveyor, {count} worker(s): {n / elapsed:9,.0f} items/s ({elapsed:.2f} s)")
    for count in (1, 4):
        rate = asyncio.run(pgqueuer_rate(pgq_n, count))
        results[f"pgqueuer x{count}"] = rate
        print(f"   pgqueuer, {count} consumer(s): {rate:9,.0f} jobs/s")
    print()
    print(f"{'':24}{'items/s':>10}{'vs pgqueuer, same processes':>30}")
    for count in (1, 2, 4):
        ours = results[f"conveyor x{count}"]
        peer = results.get(f"pgqueuer x{count}")
        ratio = f"{ours / peer:.1f}x" if peer else "-"
        print(f"{f'conveyor, {count} worker(s)':24}{ours:>10,.0f}{ratio:>30}")
    for count in (1, 4):
        print(f"{f'pgqueuer, {count} consumer(s)':24}{results[f'pgqueuer x{count}']:>10,.0f}")
    four = results["conveyor x4"]
    return [(f"no-op: >= 20,000 items/s with 4 workers (got {four:,.0f})", four >= 20_000)]


async def pgqueuer_rate(n: int, consumers: int) -> float:
    from pgqueuer import AsyncpgDriver  # noqa: PLC0415
    from pgqueuer.queries import Queries  # noqa: PLC0415

    schema = f"conveyor_bench_pgq_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(PG)
    await admin.execute(f'CREATE SCHEMA "{schema}"')
    conn = await asyncpg.connect(PG, server_settings={"search_path": schema})
    queries = Queries(AsyncpgDriver(conn))
    await queries.install()
    processes = [
        spawn("--pgq-worker", "--schema", schema, "--claim-size", "1000") for _ in range(consumers)
    ]
    try:
        # One transaction, like a job's creation: the consumers see all of it at the commit,
        # and the clock starts then (as it starts after the job is submitted).
        async with conn.transaction():
            for start in range(0, n, 10_000):
                size = min(10_000, n - start)
                await queries.enqueue(["noop"] * size, [None] * size, [0] * size)
        started = time.perf_counter()
        while await conn.fetchval("SELECT count(*) FROM pgqueuer") > 0:
            dead = [p for p in processes if p.poll() is not None]
            if dead:
                msg = f"a pgqueuer consumer died: {dead[0].communicate()[1].decode()[-2000:]}"
                raise RuntimeError(msg)
            if time.perf_counter() - started > 120:
                break
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - started
    finally:
        stop(processes)
        await conn.close()
        await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await admin.close()
    return n / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller jobs")
    parser.add_argument("--only", choices=("limits", "noop"), help="run one part")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--pgq-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="noop", help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    parser.add_argument("--mock", help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    parser.add_argument("--schema", help=argparse.SUPPRESS)
    parser.add_argument("--claim-size", type=int, default=500, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        asyncio.run(worker_main(args))
        return 0
    if args.pgq_worker:
        asyncio.run(pgq_main(args))
        return 0
    checks: list[tuple[str, bool]] = []
    if args.only in (None, "limits"):
        checks += part_limits(4_000 if args.quick else 20_000)
    if args.only in (None, "noop"):
        n = 20_000 if args.quick else 100_000
        checks += part_noop(n, 5_000 if args.quick else 20_000)
    print()
    for text, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}: {text}")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
