"""Many worker processes on one PostgreSQL store with limits in Redis; many service instances.

Real processes and real time (the point is real crashes and real notifications), bounded:
every process is waited for with a timeout, every poll stops at a deadline.
"""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import cast

import pytest

from conveyor.jobs import Jobs

from ..services import free_port, redis_url

ROOT = Path(__file__).resolve().parents[2]
LEASE_S = 2.0


def _env(runs: Path, limiter: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "CONVEYOR_TEST_RUNS": str(runs),
        "CONVEYOR_TEST_LIMITER": limiter,
        **extra,
    }


def _worker(store: str, limits: str, env: dict[str, str], *more: str) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "conveyor", "worker", "--app", "tests.jobs.scale_app:app",
        "--store", store, "--limits", limits, "--lease-s", str(LEASE_S),
        "--flush-interval-s", "0.05", "--batch-size", "20", "--claim-size", "50",
        "--grace-s", "5", *more,
    ]  # fmt: skip
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def _stop_all(processes: list[subprocess.Popen[bytes]]) -> None:
    for p in processes:
        if p.poll() is None:
            p.kill()
        p.communicate(timeout=10)


async def _query(store: str, sql: str, *args: object) -> list[tuple[object, ...]]:
    import asyncpg

    from conveyor.jobs.stores.postgres_schema import split_url

    dsn, schema = split_url(store)
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema or "public"})
    try:
        return [tuple(r) for r in await conn.fetch(sql, *args)]
    finally:
        await conn.close()


def _sql(store: str, sql: str, *args: object) -> list[tuple[object, ...]]:
    return asyncio.run(_query(store, sql, *args))


def _submit(store: str, task: str, items: list[int], concurrency: int) -> str:
    async def main() -> str:
        async with Jobs(store) as jobs:
            job = await jobs.submit(task, items, concurrency=concurrency)
            return job.id

    return asyncio.run(main())


def _runs(path: Path) -> list[tuple[int, int]]:
    if not path.exists():
        return []
    return [(int(a), int(b)) for a, b in (line.split() for line in path.read_text().splitlines())]


def _live_leases(limiter: str) -> set[str]:
    import redis

    client = redis.Redis.from_url(redis_url())
    try:
        seconds, micros = cast("tuple[int, int]", client.time())
        now = seconds + micros / 1e6
        key = f"conveyor:limit:{{{limiter}}}:leases"
        members = cast("list[bytes]", client.zrangebyscore(key, now, "+inf"))
        return {m.decode() for m in members}
    finally:
        client.close()


@pytest.mark.timeout(90)
def test_kill_9_one_of_four_workers_the_job_completes_and_nothing_is_doubled(pg, tmp_path):
    """4 workers, one killed mid-job: every item settles once, re-runs <= its in-flight items.

    And the killed worker's concurrency slots in Redis come back within one lease period.
    """
    limits, runs = redis_url(), tmp_path / "runs.txt"
    limiter = f"scale-{uuid.uuid4().hex[:8]}"
    items = 600
    job_id = _submit(pg, "work", list(range(items)), concurrency=8)
    env = _env(runs, limiter)
    workers = [_worker(pg, limits, env, "--until-idle") for _ in range(4)]
    try:
        deadline = time.monotonic() + 30
        victim_id = ""
        while time.monotonic() < deadline:
            rows = _sql(
                pg,
                "SELECT worker, count(*) FROM conveyor_items WHERE state = 'running'"
                " GROUP BY worker ORDER BY 2 DESC",
            )
            done = _sql(pg, "SELECT succeeded FROM conveyor_jobs WHERE id = $1", job_id)[0][0]
            if rows and isinstance(done, int) and done >= items // 4 and len(rows) >= 2:
                victim_id = str(rows[0][0])
                break
            time.sleep(0.02)
        assert victim_id, "no worker held items a quarter into the job"
        pid = int(victim_id.split("-")[-2])
        victim = next(w for w in workers if w.pid == pid)
        victim.send_signal(signal.SIGKILL)
        victim.communicate(timeout=10)
        killed_at = time.monotonic()
        leases_at_kill = _live_leases(limiter)
        in_flight = {
            int(str(r[0]))
            for r in _sql(
                pg,
                "SELECT idx FROM conveyor_items WHERE state = 'running' AND worker = $1",
                victim_id,
            )
        }
        assert in_flight
        runs_at_kill = Counter(i for i, _ in _runs(runs))
        # Within one lease period, every lease held at the kill has been released by its
        # (live) holder or has lapsed: the killed worker's slots are back.
        while leases_at_kill & _live_leases(limiter):
            assert time.monotonic() - killed_at < LEASE_S + 0.5, "slots not back in one lease"
            time.sleep(0.05)
        for w in workers:
            if w is not victim:
                _, err = w.communicate(timeout=45)
                assert w.returncode == 0, err.decode()
    finally:
        _stop_all(workers)

    rows = _sql(pg, "SELECT idx, state, result FROM conveyor_items ORDER BY idx")
    assert [(r[0], r[1], json.loads(str(r[2]))) for r in rows] == [
        (n, "succeeded", 2 * n) for n in range(items)
    ]
    job = _sql(pg, "SELECT status, succeeded, running, pending FROM conveyor_jobs")[0]
    assert job == ("completed", items, 0, 0)
    total = Counter(i for i, _ in _runs(runs))
    assert set(total) == set(range(items))
    again = {i: n - 1 for i, n in total.items() if n > 1}
    assert set(again) <= in_flight  # only what the killed worker held ran twice...
    assert sum(again.values()) <= len(in_flight)  # ...at most once more each
    for index, n in runs_at_kill.items():
        if index not in in_flight:
            assert total[index] == n == 1  # settled work was not redone


@pytest.mark.timeout(60)
def test_sigterm_hands_back_unstarted_items_at_once(pg, tmp_path):
    """On SIGTERM, claimed items not started are pending again while in-flight ones finish."""
    limits, runs = redis_url(), tmp_path / "runs.txt"
    limiter = f"scale-{uuid.uuid4().hex[:8]}"
    job_id = _submit(pg, "work", list(range(100)), concurrency=2)
    env = _env(runs, limiter, CONVEYOR_TEST_ITEM_S="1.0")
    worker = _worker(pg, limits, env)
    try:
        deadline = time.monotonic() + 20
        while not _runs(runs):
            assert time.monotonic() < deadline, "the worker started nothing"
            time.sleep(0.02)
        held = _sql(pg, "SELECT running FROM conveyor_jobs WHERE id = $1", job_id)[0][0]
        assert isinstance(held, int)
        assert held > 2  # it claimed a chunk, only 2 of which run
        worker.send_signal(signal.SIGTERM)
        stopped_at = time.monotonic()
        while True:
            running = _sql(pg, "SELECT running FROM conveyor_jobs WHERE id = $1", job_id)[0][0]
            if isinstance(running, int) and running <= 2:
                break
            assert time.monotonic() - stopped_at < 0.8, "unstarted items were not handed back"
            time.sleep(0.02)
        assert worker.poll() is None  # still finishing its 2 in-flight items (1 s each)
        out, err = worker.communicate(timeout=20)
        assert worker.returncode == 0, err.decode()
        assert b"stopping" in out
    finally:
        _stop_all([worker])
    states = {r[0]: r[1] for r in _sql(pg, "SELECT state, count(*) FROM conveyor_items GROUP BY 1")}
    assert "running" not in states
    assert states["succeeded"] == len(_runs(runs))


def _serve(store: str, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "conveyor", "serve", "--app", "tests.jobs.scale_app:app",
        "--store", store, "--port", str(port), "--no-worker",
    ]  # fmt: skip
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


async def _until_up(url: str, deadline_s: float) -> None:
    import httpx

    end = time.monotonic() + deadline_s
    async with httpx.AsyncClient() as client:
        while True:
            try:
                if (await client.get(f"{url}/v1/service")).status_code < 500:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < end, f"{url} did not start"
            await asyncio.sleep(0.05)


@pytest.mark.timeout(60)
def test_sse_on_one_instance_follows_a_job_submitted_to_another_and_run_elsewhere(pg, tmp_path):
    """Instance A streams every step and the end of a job posted to B and run by a worker."""
    limits, runs = redis_url(), tmp_path / "runs.txt"
    env = {**_env(runs, f"scale-{uuid.uuid4().hex[:8]}"), "CONVEYOR_KEYS_FILE": str(tmp_path / "k")}
    # The schema exists before three processes start on it (they would migrate once anyway).
    asyncio.run(_upgrade(pg))
    port_a, port_b = free_port(), free_port()
    processes = [_serve(pg, port_a, env), _serve(pg, port_b, env)]
    try:
        a, b = f"http://127.0.0.1:{port_a}", f"http://127.0.0.1:{port_b}"
        asyncio.run(_until_up(a, 20))
        asyncio.run(_until_up(b, 20))
        events = asyncio.run(_follow(a, b, pg, limits, env, processes))
    finally:
        _stop_all(processes)
    steps = [e["step"] for name, e in events if name == "progress" and e["step"]]
    # Until a worker claims it, the job says which it waits for; then its task's own steps.
    waiting = "waiting for a worker with task 'steps'"
    steps = [s for s in steps if s != waiting]
    assert [s for i, s in enumerate(steps) if i == 0 or steps[i - 1] != s] == [
        "discover",
        "match",
        "analyse",
    ]
    name, last = events[-1]
    assert name == "done"
    assert last["status"] == "completed"
    assert last["counts"] == {**cast("dict[str, int]", last["counts"]), "succeeded": 1}


async def _upgrade(store: str) -> None:
    from conveyor.jobs.stores.postgres import PostgresStore

    await PostgresStore(store).upgrade()


async def _follow(
    a: str,
    b: str,
    store: str,
    limits: str,
    env: dict[str, str],
    processes: list[subprocess.Popen[bytes]],
) -> list[tuple[str, dict[str, object]]]:
    import httpx

    async with httpx.AsyncClient(timeout=20) as client:
        posted = await client.post(f"{b}/v1/jobs", json={"task": "steps", "items": [7]})
        assert posted.status_code == 202, posted.text
        job_id = posted.json()["id"]
        events: list[tuple[str, dict[str, object]]] = []
        async with client.stream("GET", f"{a}/v1/jobs/{job_id}/events") as stream:
            # The worker starts only now: every step happens while A's client watches.
            processes.append(_worker(store, limits, env, "--until-idle"))
            name = ""
            async for line in stream.aiter_lines():
                if line.startswith("event: "):
                    name = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    events.append((name, json.loads(line.removeprefix("data: "))))
                    if name == "done":
                        break
        return events
