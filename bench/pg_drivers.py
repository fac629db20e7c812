"""Which PostgreSQL driver the PostgreSQL store uses: asyncpg against psycopg 3, on its SQL.

Both drivers run the store's own statements (``sql/postgres/queries.sql``) on the same local
database, one connection each, one transaction per call:

- **claim**: take 500 pending items with ``FOR UPDATE SKIP LOCKED`` (the ``claim_items``
  statement) and move the job's counts, until the job has none left;
- **write**: settle the claimed items 1,000 per statement (``record_items``: ``unnest`` of
  arrays) and move the counts.

Three interleaved rounds over 50,000 items each; the best round of each driver counts. Items
per second are printed per path, with the ratio.

Run it with ``python bench/pg_drivers.py`` (``CONVEYOR_BENCH_POSTGRES`` to point elsewhere).
"""

from __future__ import annotations

import os
import sys

# Run as a script, this folder comes first on sys.path, and its http.py would shadow the
# standard library's `http`. Take the folder off the path.
_HERE = os.path.dirname(os.path.abspath(__file__))  # noqa: PTH100, PTH120 - before any import
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]  # noqa: PTH100

import asyncio
import re
import time
import uuid
from typing import Any

import asyncpg
import psycopg

from conveyor.jobs.stores.postgres import PostgresStore
from conveyor.jobs.stores.postgres_schema import Query, queries

URL = os.environ.get("CONVEYOR_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
ITEMS = 50_000
CLAIM = 500
WRITE = 1_000
ROUNDS = 3
Q = queries()


def psycopg_sql(q: Query) -> str:
    """The same statement with psycopg's named placeholders."""
    return re.sub(r"\$(\d+)", lambda m: f"%({q.names[int(m.group(1)) - 1]})s", q.sql)


async def setup(schema: str, job: str) -> None:
    store = PostgresStore(f"{URL}?schema={schema}")
    await store.upgrade()
    conn = await asyncpg.connect(URL, server_settings={"search_path": schema})
    await conn.execute(
        "INSERT INTO conveyor_jobs (id, task, options, status, created_at, total, pending)"
        " VALUES ($1, 't', '{}', 'queued', 0, $2, $2)",
        job,
        ITEMS,
    )
    await conn.copy_records_to_table(
        "conveyor_items",
        records=[(job, i, "1") for i in range(ITEMS)],
        columns=("job_id", "idx", "input"),
    )
    await conn.close()


def claim_params(job: str) -> dict[str, Any]:
    return {"worker": "w", "now": None, "job": job, "limit": CLAIM}


def record_params(job: str, idx: list[int]) -> dict[str, Any]:
    n = len(idx)
    return {
        "now": None, "job": job, "worker": "w", "idx": idx, "state": ["succeeded"] * n,
        "attempts": [1] * n, "latency": [0.01] * n, "result": ["1"] * n,
        "etype": [None] * n, "emsg": [None] * n,
    }  # fmt: skip


COUNT = "UPDATE conveyor_jobs SET pending = pending - {n}, running = running + {n} WHERE id = '{j}'"


async def run_asyncpg(schema: str, job: str) -> tuple[float, float]:
    conn = await asyncpg.connect(URL, server_settings={"search_path": schema})
    claimed: list[int] = []
    t0 = time.perf_counter()
    while True:
        async with conn.transaction():
            q = Q["claim_items"]
            rows = await conn.fetch(q.sql, *q.args(claim_params(job)))
            await conn.execute(COUNT.format(n=len(rows), j=job))
        if not rows:
            break
        claimed.extend(r[0] for r in rows)
    claim_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for start in range(0, len(claimed), WRITE):
        async with conn.transaction():
            q = Q["record_items"]
            await conn.fetch(q.sql, *q.args(record_params(job, claimed[start : start + WRITE])))
            await conn.execute(COUNT.format(n=0, j=job))
    write_s = time.perf_counter() - t0
    await conn.close()
    return claim_s, write_s


async def run_psycopg(schema: str, job: str) -> tuple[float, float]:
    conn = await psycopg.AsyncConnection.connect(URL, options=f"-c search_path={schema}")
    claim_sql = psycopg_sql(Q["claim_items"])
    record_sql = psycopg_sql(Q["record_items"])
    claimed: list[int] = []
    t0 = time.perf_counter()
    while True:
        async with conn.transaction():
            cur = await conn.execute(claim_sql, claim_params(job), prepare=True)
            rows = await cur.fetchall()
            await conn.execute(COUNT.format(n=len(rows), j=job))
        if not rows:
            break
        claimed.extend(r[0] for r in rows)
    claim_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for start in range(0, len(claimed), WRITE):
        async with conn.transaction():
            params = record_params(job, claimed[start : start + WRITE])
            cur = await conn.execute(record_sql, params, prepare=True)
            await cur.fetchall()
            await conn.execute(COUNT.format(n=0, j=job))
    write_s = time.perf_counter() - t0
    await conn.close()
    return claim_s, write_s


async def drop(schema: str) -> None:
    conn = await asyncpg.connect(URL)
    await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    await conn.close()


async def main() -> None:
    best: dict[str, list[float]] = {"asyncpg": [1e9, 1e9], "psycopg": [1e9, 1e9]}
    runners = {"asyncpg": run_asyncpg, "psycopg": run_psycopg}
    for round_ in range(ROUNDS):
        for name, runner in runners.items():
            schema = f"conveyor_bench_{uuid.uuid4().hex[:8]}"
            job = f"job-{round_}"
            await setup(schema, job)
            try:
                claim_s, write_s = await runner(schema, job)
            finally:
                await drop(schema)
            best[name][0] = min(best[name][0], claim_s)
            best[name][1] = min(best[name][1], write_s)
            print(f"round {round_ + 1} {name:8} claim {ITEMS / claim_s:9,.0f} items/s"
                  f"   write {ITEMS / write_s:9,.0f} items/s")  # fmt: skip
    print()
    print(f"{ITEMS:,} items; claims of {CLAIM}, writes of {WRITE}; best of {ROUNDS} rounds")
    print(f"{'driver':10}{'claim items/s':>16}{'write items/s':>16}")
    for name, (claim_s, write_s) in best.items():
        print(f"{name:10}{ITEMS / claim_s:16,.0f}{ITEMS / write_s:16,.0f}")
    a, p = best["asyncpg"], best["psycopg"]
    print(f"asyncpg / psycopg: claim {p[0] / a[0]:.2f}x, write {p[1] / a[1]:.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
