"""The store contract, continued: tenants, idempotency keys, paging, versions, percentiles.

Same fixtures as ``test_store_contract.py``: every test runs once per store kind.
"""

import dataclasses
import json
from collections.abc import Iterator

import pytest

from conveyor.jobs.model import ItemResult, JobOptions, NewJob

from .conftest import StoreKit


def new_job(job_id: str, *, tenant: str = "default", key: str | None = None) -> NewJob:
    return NewJob(
        id=job_id,
        task="t",
        options=JobOptions(concurrency=3),
        created_at=1.0,
        tenant=tenant,
        idempotency_key=key,
    )


def texts(n: int) -> list[str]:
    return [json.dumps(i) for i in range(n)]


def test_a_job_belongs_to_its_tenant_and_lists_filter_by_tenant(kit: StoreKit, run):
    """The tenant given at create is stored; list_jobs(tenant=) returns only that tenant's."""

    async def main() -> None:
        store = kit.open()
        await store.create_job(new_job("a", tenant="acme"), texts(1))
        await store.create_job(new_job("b", tenant="globex"), texts(1))
        await store.create_job(new_job("c"), texts(1))
        job = await store.get_job("a")
        assert job is not None
        assert job.tenant == "acme"
        assert [j.id for j in await store.list_jobs(tenant="acme")] == ["a"]
        assert [j.id for j in await store.list_jobs(tenant="default")] == ["c"]
        assert [j.id for j in await store.list_jobs()] == ["c", "b", "a"]

    run(main())


def test_the_same_idempotency_key_returns_the_first_job_without_reading_items(kit, run):
    """A second create with the same tenant and key returns the first job and reads no item."""

    def untouchable() -> Iterator[str]:
        msg = "the items of a replayed create must not be read"
        raise AssertionError(msg)
        yield ""  # pragma: no cover

    async def main() -> None:
        store = kit.open()
        first = await store.create_job(new_job("a", tenant="acme", key="k1"), texts(2))
        again = await store.create_job(new_job("b", tenant="acme", key="k1"), untouchable())
        assert again.id == first.id == "a"
        assert again.idempotency_key == "k1"
        # Keys are per tenant: another tenant's same key makes a new job.
        other = await store.create_job(new_job("c", tenant="globex", key="k1"), texts(1))
        assert other.id == "c"
        assert {j.id for j in await store.list_jobs()} == {"a", "c"}

    run(main())


def test_list_jobs_pages_with_a_cursor_and_filters_by_task_and_status(kit, run):
    """`before` pages on from an id, newest first; task and status filter together."""

    async def main() -> None:
        store = kit.open()
        for name in ("a", "b", "c", "d", "e"):
            job = dataclasses.replace(new_job(name), task="x" if name in "ace" else "y")
            await store.create_job(job, texts(1))
        await store.request_cancel("c")
        first = await store.list_jobs(limit=2)
        assert [j.id for j in first] == ["e", "d"]
        second = await store.list_jobs(limit=2, before=first[-1].id)
        assert [j.id for j in second] == ["c", "b"]
        assert [j.id for j in await store.list_jobs(limit=2, before="b")] == ["a"]
        assert [j.id for j in await store.list_jobs(task="x")] == ["e", "c", "a"]
        assert [j.id for j in await store.list_jobs(task="x", status="queued")] == ["e", "a"]

    run(main())


def test_every_change_to_a_job_raises_its_version(kit: StoreKit, run):
    """Claim, record, progress, cancel: each leaves the job at a higher version."""

    async def main() -> None:
        store = kit.open()
        seen = [(await store.create_job(new_job("a"), texts(3))).version]

        async def version() -> int:
            job = await store.get_job("a")
            assert job is not None
            return job.version

        await store.claim("w", limit=2, lease_s=10)
        seen.append(await version())
        await store.record("w", [ItemResult("a", 0, "succeeded", 1, 0.1, "1")])
        seen.append(await version())
        await store.set_progress("a", inflight=0.5, step="halfway")
        seen.append(await version())
        await store.request_cancel("a")
        seen.append(await version())
        assert seen == sorted(set(seen)), seen
        # A read changes nothing.
        assert await version() == seen[-1]

    run(main())


def test_latency_percentiles_come_from_the_settled_items(kit: StoreKit, run):
    """p50/p95/p99 follow the recorded latencies (within 10%), and retry takes failed ones out."""

    async def main() -> None:
        store = kit.open()
        await store.create_job(new_job("a"), texts(100))
        await store.claim("w", limit=100, lease_s=10)
        results = [ItemResult("a", i, "succeeded", 1, 0.010 * (i + 1), "null") for i in range(99)]
        results.append(ItemResult("a", 99, "failed", 1, 5.0, error_type="E", error_message="x"))
        await store.record("w", results)
        job = await store.get_job("a")
        assert job is not None
        s = job.summary
        assert s.latency_p50_s == pytest.approx(0.50, rel=0.1)
        assert 0.50 <= s.latency_p50_s <= 0.55
        assert s.latency_p95_s == pytest.approx(0.95, rel=0.1)
        assert s.latency_p99_s == pytest.approx(0.99, rel=0.1)
        assert s.concurrency == 3
        await store.retry_failed("a")
        job = await store.get_job("a")
        assert job is not None
        assert sum(n for _, n in job.latency_hist) == 99
        assert job.summary.latency_p99_s == pytest.approx(0.99, rel=0.1)

    run(main())
