"""Creates racing each other at the service: the active-jobs limit and idempotency keys hold.

Each test fires its POSTs at once (``asyncio.gather`` over the in-process ASGI app), on every
store: the service must answer as if they came one after the other.
"""

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor.jobs import MemoryStore, SqliteStore, Store
from conveyor.jobs.model import ItemResult
from conveyor.jobs.stores.postgres import PostgresStore

from ..services import drop_schema, postgres_url, unique_schema
from .conftest import api, config


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A fresh store of each kind (PostgreSQL: in a schema of its own, dropped afterwards)."""
    if request.param == "memory":
        yield MemoryStore()
    elif request.param == "sqlite":
        yield SqliteStore(tmp_path / "jobs.db")
    else:
        base, schema = postgres_url(), unique_schema()
        yield PostgresStore(f"{base}?schema={schema}")
        drop_schema(base, schema)


def test_parallel_posts_never_pass_the_active_jobs_limit(tmp_path: Path, store: Store):
    """30 POSTs at once with a limit of 3: three 202s, 27 429s naming the limit, 3 jobs."""

    async def main() -> tuple[list[Any], list[Any]]:
        cfg = config(tmp_path, max_active_jobs_per_tenant=3)
        async with api(cfg, worker=False, store=store) as a:
            body = {"task": "echo", "items": [1, 2]}
            answers = await asyncio.gather(
                *(a.client.post("/v1/jobs", json=body) for _ in range(30))
            )
            listed = (await a.client.get("/v1/jobs")).json()["data"]
            return list(answers), listed

    answers, listed = asyncio.run(main())
    assert Counter(r.status_code for r in answers) == {202: 3, 429: 27}
    for r in answers:
        if r.status_code == 429:
            assert r.headers["content-type"] == "application/problem+json"
            detail = r.json()["detail"]
            assert "has 3 active jobs" in detail
            assert "max_active_jobs_per_tenant=3" in detail
    created = {r.json()["id"] for r in answers if r.status_code == 202}
    assert {j["id"] for j in listed} == created
    assert {j["status"] for j in listed} == {"queued"}


def test_parallel_posts_with_one_idempotency_key_all_answer_the_one_job(
    tmp_path: Path, store: Store
):
    """16 POSTs at once with the same key and body: all 202, one job, 15 marked as replays."""

    async def main() -> tuple[list[Any], list[Any]]:
        async with api(config(tmp_path), worker=False, store=store) as a:
            body = {"task": "echo", "items": [1, 2, 3]}
            key = {"Idempotency-Key": "order-7"}
            answers = await asyncio.gather(
                *(a.client.post("/v1/jobs", json=body, headers=key) for _ in range(16))
            )
            listed = (await a.client.get("/v1/jobs")).json()["data"]
            return list(answers), listed

    answers, listed = asyncio.run(main())
    assert [r.status_code for r in answers] == [202] * 16, [r.text for r in answers]
    assert len({r.json()["id"] for r in answers}) == 1
    replayed = [r.headers.get("Idempotent-Replayed") for r in answers]
    assert Counter(replayed) == {"true": 15, None: 1}
    assert [j["id"] for j in listed] == [answers[0].json()["id"]]


def test_parallel_replays_of_a_key_are_answered_at_the_active_jobs_limit(
    tmp_path: Path, store: Store
):
    """At the limit, POSTs racing with the key of an existing job all replay it, never 429."""

    async def main() -> tuple[Any, list[Any]]:
        cfg = config(tmp_path, max_active_jobs_per_tenant=2)
        async with api(cfg, worker=False, store=store) as a:
            body = {"task": "echo", "items": [1]}
            key = {"Idempotency-Key": "k"}
            first = await a.client.post("/v1/jobs", json=body, headers=key)
            assert (await a.client.post("/v1/jobs", json=body)).status_code == 202
            answers = await asyncio.gather(
                *(a.client.post("/v1/jobs", json=body, headers=key) for _ in range(10))
            )
            return first, list(answers)

    first, answers = asyncio.run(main())
    assert [r.status_code for r in answers] == [202] * 10
    assert {r.json()["id"] for r in answers} == {first.json()["id"]}
    assert {r.headers.get("Idempotent-Replayed") for r in answers} == {"true"}


def test_a_retry_that_reopens_a_completed_job_is_429_at_the_limit(tmp_path: Path, store: Store):
    """Retry of a completed job with failures makes it active: at the limit, 429, unchanged."""

    async def main() -> tuple[Any, Any, Any]:
        cfg = config(tmp_path, max_active_jobs_per_tenant=2)
        async with api(cfg, worker=False, store=store) as a:
            body = {"task": "echo", "items": [1, 2]}
            done = (await a.client.post("/v1/jobs", json=body)).json()["id"]
            claim = await store.claim("w", limit=2, lease_s=60, job_id=done)
            assert claim is not None
            results = [
                ItemResult(done, 0, "succeeded", 1, 0.1, "1"),
                ItemResult(done, 1, "failed", 1, 0.1, None, "E", "x"),
            ]
            await store.record("w", results)
            others = [(await a.client.post("/v1/jobs", json=body)).json()["id"] for _ in "ab"]
            refused = await a.client.post(f"/v1/jobs/{done}/retry")
            after = (await a.client.get(f"/v1/jobs/{done}")).json()
            await a.client.post(f"/v1/jobs/{others[0]}/cancel")
            allowed = await a.client.post(f"/v1/jobs/{done}/retry")
            return refused, after, allowed

    refused, after, allowed = asyncio.run(main())
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert "max_active_jobs_per_tenant=2" in refused.json()["detail"]
    assert (after["status"], after["counts"]["failed"]) == ("completed", 1)
    assert allowed.status_code == 202
    assert allowed.json()["retried"] == 1
