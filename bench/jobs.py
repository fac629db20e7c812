"""Durable jobs on the SQLite store: items settled and persisted per second, end to end.

Measured, in one run:

1. a 200,000-item job of no-op tasks, submitted, then run by a `conveyor worker` process:
   items settled and persisted per second (target >= 20,000/s);
2. while it runs at full speed, the latency of a status read (`Jobs.get`), from another
   process (a web app) and from inside the worker's own process (target p99 < 10 ms);
3. the plain approach on the same file settings (WAL, synchronous=NORMAL): one row update and
   one commit per item;
4. optionally (``--arq``), arq against the Redis at 127.0.0.1:6379: one arq job per item;
5. optionally (``--million``), the worker's peak RSS for a 1,000,000-item job (target
   < 200 MB).

Every loop is bounded in count and time. ``python bench/jobs.py [--items N] [--million]
[--arq]``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from conveyor.jobs import App, Jobs, SqliteStore, Worker, WorkerOptions

app = App()


@app.task("noop")
async def noop(item: Any) -> Any:
    return item


def _p(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- the worker process ------------------------------------------------------------------


async def _worker_main(db: str, read_interval_s: float) -> dict[str, Any]:
    store = SqliteStore(db)
    reads: list[float] = []
    worker = Worker(store, app, options=WorkerOptions(claim_size=2000, batch_size=2000))
    done = asyncio.Event()

    async def reader() -> None:
        jobs = await store.list_jobs(limit=1)
        job_id = jobs[0].id
        while not done.is_set() and len(reads) < 100_000:
            t = time.perf_counter()
            await store.get_job(job_id)
            reads.append(time.perf_counter() - t)
            await asyncio.sleep(read_interval_s)

    task = asyncio.create_task(reader())
    t0 = time.perf_counter()
    await worker.run(until_idle=True)
    elapsed = time.perf_counter() - t0
    done.set()
    await task
    await store.close()
    return {
        "elapsed_s": elapsed,
        "settled": worker.settled,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "read_p50_ms": _p(reads, 0.5) * 1000,
        "read_p99_ms": _p(reads, 0.99) * 1000,
        "reads": len(reads),
    }


# -- the parent ---------------------------------------------------------------------------


async def _submit(db: Path, n: int) -> tuple[str, float]:
    t0 = time.perf_counter()
    async with Jobs(f"sqlite:///{db}") as jobs:
        job = await jobs.submit("noop", range(n), concurrency=100)
    return job.id, time.perf_counter() - t0


async def _watch(
    db: Path, job_id: str, proc: subprocess.Popen[str], deadline_s: float
) -> list[float]:
    reads: list[float] = []
    end = time.perf_counter() + deadline_s
    async with Jobs(f"sqlite:///{db}") as jobs:
        while proc.poll() is None and time.perf_counter() < end and len(reads) < 200_000:
            t = time.perf_counter()
            job = await jobs.get(job_id)
            reads.append(time.perf_counter() - t)
            if job.done:
                break
            await asyncio.sleep(0.005)
    return reads


def run_job(n: int, deadline_s: float) -> dict[str, Any]:
    """Submit an n-item job, run a worker process on it, read its status meanwhile."""
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "jobs.db"
        job_id, submit_s = asyncio.run(_submit(db, n))
        command = [sys.executable, __file__, "--worker", str(db)]
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)  # noqa: S603
        try:
            reads = asyncio.run(_watch(db, job_id, proc, deadline_s))
            out, _ = proc.communicate(timeout=deadline_s)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        stats = json.loads(out)

        async def final() -> Any:
            async with Jobs(f"sqlite:///{db}") as jobs:
                return await jobs.get(job_id)

        job = asyncio.run(final())
        assert job.status == "completed", job
        assert job.counts.succeeded == n, job.counts
        span = job.finished_at - job.started_at
        return {
            **stats,
            "submit_s": submit_s,
            "store_span_s": span,
            "items_per_s": n / span,
            "other_read_p50_ms": _p(reads, 0.5) * 1000,
            "other_read_p99_ms": _p(reads, 0.99) * 1000,
            "other_reads": len(reads),
        }


def _plain_db(path: Path, n: int, *, wal: bool) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    if wal:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, input TEXT, state TEXT, result TEXT)")
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO items VALUES (?, ?, 'pending', NULL)", ((i, str(i)) for i in range(n))
    )
    conn.execute("COMMIT")
    return conn


def plain_per_item(n: int, deadline_s: float, *, wal: bool, claim: bool) -> dict[str, Any]:
    """The plain approach: per item, (mark it running, commit,) run it, store it, commit."""
    with tempfile.TemporaryDirectory() as tmp:
        conn = _plain_db(Path(tmp) / "plain.db", n, wal=wal)

        async def run() -> int:
            done = 0
            end = time.perf_counter() + deadline_s
            for i in range(n):
                if claim:
                    conn.execute("UPDATE items SET state = 'running' WHERE id = ?", (i,))
                value = await noop(i)
                conn.execute(
                    "UPDATE items SET state = 'succeeded', result = ? WHERE id = ?",
                    (json.dumps(value), i),
                )
                done += 1
                if time.perf_counter() > end:
                    break
            return done

        t0 = time.perf_counter()
        done = asyncio.run(run())  # autocommit: every UPDATE is its own transaction
        elapsed = time.perf_counter() - t0
        conn.close()
        return {"items": done, "elapsed_s": elapsed, "items_per_s": done / elapsed}


def write_paths(n: int, batch: int) -> dict[str, float] | None:
    """The store's write path alone, n results in `batch`-row transactions: sqlite3 on one
    thread (what SqliteStore does) vs aiosqlite; and aiosqlite with a commit per item."""
    try:
        # Optional peers, imported by name so that type checking does not need them installed.
        aiosqlite = importlib.import_module("aiosqlite")
    except ImportError:
        return None
    sql = "UPDATE items SET state = 'succeeded', result = ? WHERE id = ?"
    rows = [(json.dumps(i), i) for i in range(n)]
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        conn = _plain_db(Path(tmp) / "a.db", n, wal=True)
        pool = ThreadPoolExecutor(1)

        def tx(chunk: list[tuple[str, int]]) -> None:
            conn.execute("BEGIN")
            conn.executemany(sql, chunk)
            conn.execute("COMMIT")

        async def threaded() -> None:
            loop = asyncio.get_running_loop()
            for k in range(0, n, batch):
                await loop.run_in_executor(pool, tx, rows[k : k + batch])

        t0 = time.perf_counter()
        asyncio.run(threaded())
        out["sqlite3_thread_batched"] = n / (time.perf_counter() - t0)
        pool.shutdown()
        conn.close()

        _plain_db(Path(tmp) / "b.db", n, wal=True).close()

        async def with_aiosqlite(per_item: bool) -> int:
            async with aiosqlite.connect(Path(tmp) / "b.db", isolation_level=None) as db:
                if per_item:
                    count = min(n, 20_000)
                    for row in rows[:count]:
                        await db.execute(sql, row)
                    return count
                for k in range(0, n, batch):
                    await db.execute("BEGIN")
                    await db.executemany(sql, rows[k : k + batch])
                    await db.execute("COMMIT")
                return n

        t0 = time.perf_counter()
        done = asyncio.run(with_aiosqlite(per_item=False))
        out["aiosqlite_batched"] = done / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        done = asyncio.run(with_aiosqlite(per_item=True))
        out["aiosqlite_per_item"] = done / (time.perf_counter() - t0)
    return out


async def arq_noop(_ctx: Any, item: int) -> int:
    """The arq task: a no-op, like the conveyor one."""
    return item


def arq_per_item(n: int, deadline_s: float) -> dict[str, Any] | None:
    """One arq job per item against the local Redis; None when arq or Redis is missing."""
    # Run as a script, this folder is first on sys.path, and its http.py would shadow the
    # standard library's http, which redis and aiohttp import.
    here = str(Path(__file__).resolve().parent)
    sys.path[:] = [p for p in sys.path if str(Path(p or ".").resolve()) != here]
    try:
        create_pool = importlib.import_module("arq").create_pool
        redis_settings = importlib.import_module("arq.connections").RedisSettings
        arq_worker = importlib.import_module("arq.worker").Worker
    except ImportError as exc:
        print(f"arq: not measured ({exc})")
        return None

    async def run() -> dict[str, Any]:
        settings = redis_settings(host="127.0.0.1", port=6379, database=9)
        pool = await create_pool(settings)
        await pool.flushdb()
        t0 = time.perf_counter()
        for start in range(0, n, 1000):
            await asyncio.gather(
                *(pool.enqueue_job("arq_noop", i) for i in range(start, min(n, start + 1000)))
            )
        enqueue_s = time.perf_counter() - t0
        worker = arq_worker(
            functions=[arq_noop],
            redis_pool=pool,
            burst=True,
            max_jobs=100,
            poll_delay=0.01,
            keep_result=3600,
            handle_signals=False,
        )
        t1 = time.perf_counter()
        async with asyncio.timeout(deadline_s):
            await worker.async_run()
        run_s = time.perf_counter() - t1
        done = worker.jobs_complete
        await worker.close()
        await pool.flushdb()
        await pool.aclose()
        return {
            "items": done,
            "enqueue_s": enqueue_s,
            "elapsed_s": run_s,
            "items_per_s": done / run_s,
        }

    try:
        return asyncio.run(run())
    except (OSError, TimeoutError) as exc:
        print(f"arq: not measured ({exc!r})")
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--million", action="store_true", help="also a 1,000,000-item job (RSS)")
    parser.add_argument("--arq", action="store_true", help="also arq on the local Redis")
    parser.add_argument(
        "--aiosqlite", action="store_true", help="also the write path via aiosqlite"
    )
    parser.add_argument("--plain-items", type=int, default=20_000)
    parser.add_argument("--deadline-s", type=float, default=300.0)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(asyncio.run(_worker_main(args.worker, 0.01))))
        return 0
    print(
        f"python {sys.version.split()[0]}, sqlite {sqlite3.sqlite_version}, {os.cpu_count()} cores"
    )
    job = run_job(args.items, args.deadline_s)
    plains = {
        "plain: 1 commit per item, sqlite defaults": plain_per_item(
            min(args.plain_items, 2_000), args.deadline_s, wal=False, claim=False
        ),
        "plain: claim + result commits, WAL": plain_per_item(
            args.plain_items, args.deadline_s, wal=True, claim=True
        ),
        "plain: 1 commit per item, WAL": plain_per_item(
            args.plain_items, args.deadline_s, wal=True, claim=False
        ),
    }
    paths = write_paths(args.items, 1000) if args.aiosqlite else None
    arq = arq_per_item(args.plain_items, args.deadline_s) if args.arq else None
    big = run_job(1_000_000, args.deadline_s * 3) if args.million else None

    print()
    print(f"{'contender':<46} {'items':>10} {'items/s':>10}  notes")
    print(
        f"{'conveyor jobs, SQLite, 1 worker process':<46} {args.items:>10,}"
        f" {job['items_per_s']:>10,.0f}  claims, leases, batched results;"
        f" worker peak RSS {job['peak_rss_mb']:.0f} MB; submit {job['submit_s']:.2f}s"
    )
    for name, plain in plains.items():
        rate = plain["items_per_s"]
        print(f"{name:<46} {plain['items']:>10,} {rate:>10,.0f}  one process, sequential")
    if arq is not None:
        print(
            f"{'arq: 1 job per item (Redis 127.0.0.1)':<46} {arq['items']:>10,}"
            f" {arq['items_per_s']:>10,.0f}  enqueue {arq['enqueue_s']:.2f}s not counted"
        )
    if big is not None:
        print(
            f"{'conveyor jobs, 1,000,000 items':<46} {1_000_000:>10,}"
            f" {big['items_per_s']:>10,.0f}  worker peak RSS {big['peak_rss_mb']:.0f} MB"
        )
    if paths is not None:
        print()
        print("write path alone (no claims, no engine), results per second:")
        threaded = paths["sqlite3_thread_batched"]
        print(f"  sqlite3 on one thread, 1000-row transactions: {threaded:,.0f}")
        print(f"  aiosqlite, 1000-row transactions:             {paths['aiosqlite_batched']:,.0f}")
        print(f"  aiosqlite, one commit per result:             {paths['aiosqlite_per_item']:,.0f}")
    print()
    print(
        f"status read while running, other process: p50 {job['other_read_p50_ms']:.2f} ms,"
        f" p99 {job['other_read_p99_ms']:.2f} ms ({job['other_reads']:,} reads)"
    )
    print(
        f"status read while running, worker's process: p50 {job['read_p50_ms']:.2f} ms,"
        f" p99 {job['read_p99_ms']:.2f} ms ({job['reads']:,} reads)"
    )
    print()
    rate, p99 = job["items_per_s"], job["other_read_p99_ms"]
    checks = [
        (rate >= 20_000, f"items/s {rate:,.0f} >= 20,000 ({rate / 20_000:.2f}x the target)"),
        (p99 < 10, f"status read p99 {p99:.2f} ms < 10 ms (from another process)"),
    ]
    if big is not None:
        checks.append(
            (
                big["peak_rss_mb"] < 200,
                f"1M-item worker peak RSS {big['peak_rss_mb']:.0f} MB < 200 MB",
            )
        )
    for ok, text in checks:
        print(("PASS  " if ok else "FAIL  ") + text)
    ratios = {name: p["items_per_s"] for name, p in plains.items()}
    if arq is not None:
        ratios["arq, one job per item"] = arq["items_per_s"]
    for name, rate in ratios.items():
        print(f"RATIO {job['items_per_s'] / rate:6.2f}x  conveyor jobs / {name}")
    print(
        f"INFO  status read p99 {job['read_p99_ms']:.2f} ms from inside the worker's process"
        " (shares its GIL)"
    )
    return 0 if all(ok for ok, _ in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
