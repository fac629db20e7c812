"""The in-memory job store against the SQLite file store, the store calls alone.

`MemoryStore` is the SQLite dialect on a database in memory (see ``docs/decisions.md``). Three
workloads, each on a new store, best of ``--rounds`` interleaved rounds (a shared 2-core
machine is noisy; the best round is the least disturbed):

1. 300 jobs of 10 items, claimed 4 at a time, each claim started, recorded and read back (the
   shape of the tests' jobs);
2. one job of 20,000 items, claimed 500 at a time (a worker's shape);
3. 1,000 ``list_jobs`` of 20 jobs.

``python bench/memory_store.py [--rounds N]``. Run on an older commit, it measures the store
of that commit (the dict-based `MemoryStore` before 55ffd65).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from conveyor.jobs import MemoryStore, SqliteStore
from conveyor.jobs.model import ItemResult, JobOptions, NewJob

if TYPE_CHECKING:
    from conveyor.jobs.store import Store


async def run_job(store: Store, job_id: str, n: int, batch: int) -> None:
    """Create a job of `n` items, then claim, start and record them `batch` at a time."""
    new = NewJob(id=job_id, task="t", options=JobOptions(), created_at=0.0)
    await store.create_job(new, (json.dumps(i) for i in range(n)))
    while (claim := await store.claim("w", limit=batch, lease_s=30, job_id=job_id)) is not None:
        await store.started("w", [(i.job_id, i.index) for i in claim.items])
        results = [ItemResult(i.job_id, i.index, "succeeded", 0, 0.01, "1") for i in claim.items]
        await store.record("w", results)
        await store.get_job(job_id)
    job = await store.get_job(job_id)
    assert job is not None, job_id
    assert job.status == "completed", job


async def workloads(store: Store) -> tuple[float, float, float]:
    """Seconds of each workload (see the module docstring) on `store`."""
    t0 = time.perf_counter()
    for k in range(300):
        await run_job(store, f"small{k:05d}", 10, 4)
    t1 = time.perf_counter()
    await run_job(store, "big", 20_000, 500)
    t2 = time.perf_counter()
    for _ in range(1000):
        await store.list_jobs(limit=20)
    t3 = time.perf_counter()
    await store.close()
    return t1 - t0, t2 - t1, t3 - t2


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    best: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        for r in range(args.rounds):
            stores: dict[str, Store] = {
                "MemoryStore": MemoryStore(),
                "SqliteStore (file)": SqliteStore(Path(folder) / f"jobs{r}.db"),
            }
            for name, store in stores.items():
                got = asyncio.run(workloads(store))
                best[name] = [min(a, b) for a, b in zip(best.get(name, got), got, strict=True)]
    print(f"{'store':22}{'300 small jobs':>16}{'one 20,000-item job':>21}{'1,000 list_jobs':>17}")
    for name, (small, big, lists) in best.items():
        print(f"{name:22}{small * 1000:>13.0f} ms{big * 1000:>18.0f} ms{lists * 1000:>14.0f} ms")
    memory, sqlite = best["MemoryStore"], best["SqliteStore (file)"]
    print(f"RATIO {sqlite[0] / memory[0]:.2f}x  small jobs: SQLite file / memory")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
