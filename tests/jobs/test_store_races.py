"""The store contract, continued: creates racing each other (active-jobs limit, idempotency).

Same fixtures as ``test_store_contract.py``: every test runs once per store kind. The races
are real for the durable stores: each create runs on its own handle (SQLite: its own
connection; PostgreSQL: its own pool), all started at once.
"""

import asyncio
import json
from collections.abc import Iterator

import pytest

from conveyor.jobs.errors import TooManyActiveJobs
from conveyor.jobs.model import ItemResult, Job, JobOptions, NewJob
from conveyor.jobs.store import Store

from .conftest import StoreKit


def new_job(job_id: str, *, tenant: str = "acme", key: str | None = None) -> NewJob:
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


def untouchable() -> Iterator[str]:
    msg = "the items of a create that makes no job must not be read"
    raise AssertionError(msg)
    yield ""  # pragma: no cover


async def connected(kit: StoreKit, n: int) -> list[Store]:
    """`n` handles, each connected already, so that the calls made on them overlap."""
    handles = [kit.open() for _ in range(n)]
    for h in handles:
        assert await h.get_job("none") is None
    return handles


def test_creates_racing_never_pass_a_tenants_active_jobs_limit(kit: StoreKit, run):
    """30 creates of one tenant at once, limit 3: 3 jobs, 27 refused; other tenants apart."""

    async def main() -> None:
        handles = await connected(kit, 10)

        async def create(n: int, tenant: str) -> Job | TooManyActiveJobs:
            try:
                job = new_job(f"{tenant}-{n:02}", tenant=tenant)
                return await handles[n % 10].create_job(job, texts(20), max_active_jobs=3)
            except TooManyActiveJobs as exc:
                return exc

        calls = [create(n, "acme") for n in range(30)] + [create(n, "globex") for n in range(5)]
        answers = await asyncio.gather(*calls)
        for tenant in ("acme", "globex"):
            theirs = [a for a in answers if a.tenant == tenant]
            made = [a for a in theirs if isinstance(a, Job)]
            refused = [a for a in theirs if isinstance(a, TooManyActiveJobs)]
            assert (len(made), len(refused)) == (3, 27 if tenant == "acme" else 2)
            assert all(e.limit == 3 and e.active >= 3 for e in refused)
            stored = await handles[0].list_jobs(tenant=tenant)
            assert {j.id for j in stored} == {j.id for j in made}
            assert all(j.counts.total == 20 for j in stored)

    run(main())


def test_a_create_over_the_limit_reads_no_item_and_writes_nothing(kit: StoreKit, run):
    """At the limit, a create raises TooManyActiveJobs naming it, before reading an item."""

    async def main() -> None:
        store = kit.open()
        for name in ("a", "b"):
            await store.create_job(new_job(name), texts(1), max_active_jobs=2)
        with pytest.raises(TooManyActiveJobs, match=r"'acme' has 2 active jobs.*=2\)") as info:
            await store.create_job(new_job("c"), untouchable(), max_active_jobs=2)
        assert (info.value.tenant, info.value.active, info.value.limit) == ("acme", 2, 2)
        assert await store.get_job("c") is None
        # No limit given: none applies.
        assert (await store.create_job(new_job("d"), texts(1))).id == "d"

    run(main())


def test_queued_running_and_cancelling_jobs_count_and_finished_ones_do_not(kit: StoreKit, run):
    """A job counts against the limit until it is completed, failed or cancelled."""

    async def refused(store: Store, job_id: str) -> bool:
        try:
            await store.create_job(new_job(job_id), texts(1), max_active_jobs=2)
        except TooManyActiveJobs:
            return True
        return False

    async def main() -> None:
        store = kit.open()
        await store.create_job(new_job("a"), texts(1))
        await store.create_job(new_job("b"), texts(1))
        claim = await store.claim("w", limit=1, lease_s=10, job_id="b")
        assert claim is not None
        cancelling = await store.request_cancel("b")
        assert cancelling.status == "cancelling"  # its item is still running
        assert await refused(store, "c1")
        await store.record("w", [ItemResult("b", 0, "cancelled", 1, None)])
        assert (await store.get_job("b")).status == "cancelled"  # type: ignore[union-attr]
        assert not await refused(store, "c2")  # a, c2
        await store.fail_job("a", "gone")
        assert not await refused(store, "c3")  # c2, c3
        assert await refused(store, "c4")
        claim = await store.claim("w", limit=1, lease_s=10, job_id="c2")
        assert claim is not None
        await store.record("w", [ItemResult("c2", 0, "succeeded", 1, 0.1, "1")])
        assert (await store.get_job("c2")).status == "completed"  # type: ignore[union-attr]
        assert not await refused(store, "c5")
        other = await store.create_job(new_job("x", tenant="globex"), texts(1), max_active_jobs=1)
        assert other.id == "x"  # the limit is per tenant

    run(main())


def test_a_replay_of_a_key_at_the_limit_is_answered_not_refused(kit: StoreKit, run):
    """A create whose key has a job returns it, reading no item, even at the tenant's limit."""

    async def main() -> None:
        store = kit.open()
        first = await store.create_job(new_job("a", key="k"), texts(1), max_active_jobs=1)
        again = await store.create_job(new_job("b", key="k"), untouchable(), max_active_jobs=1)
        assert again.id == first.id == "a"
        with pytest.raises(TooManyActiveJobs):
            await store.create_job(new_job("c", key="other"), untouchable(), max_active_jobs=1)

    run(main())


def test_creates_racing_with_one_key_all_return_the_one_job(kit: StoreKit, run):
    """16 creates at once with the same tenant and key: one job, every create returns it."""

    async def main() -> None:
        handles = await connected(kit, 8)
        calls = [
            handles[n % 8].create_job(new_job(f"j{n:02}", key="order-7"), texts(50))
            for n in range(16)
        ]
        answers = await asyncio.gather(*calls)
        assert len({j.id for j in answers}) == 1
        (stored,) = await handles[0].list_jobs()
        assert stored.id == answers[0].id
        assert stored.counts.total == 50
        assert len(await handles[0].items(stored.id)) == 50

    run(main())


def test_creates_racing_with_one_key_under_a_limit_of_one_are_never_refused(kit: StoreKit, run):
    """With a limit of 1, racing creates of one key make the job once and replay it, no refusal."""

    async def main() -> None:
        handles = await connected(kit, 8)
        calls = [
            handles[n % 8].create_job(new_job(f"j{n:02}", key="k"), texts(5), max_active_jobs=1)
            for n in range(16)
        ]
        answers = await asyncio.gather(*calls)
        assert len({j.id for j in answers}) == 1
        assert [j.id for j in await handles[0].list_jobs()] == [answers[0].id]

    run(main())


async def finished_with_a_failure(store: Store, job_id: str) -> None:
    """Create `job_id` (one item) and settle its item as failed: the job is failed."""
    await store.create_job(new_job(job_id), texts(1))
    claim = await store.claim("w", limit=1, lease_s=10, job_id=job_id)
    assert claim is not None
    await store.record("w", [ItemResult(job_id, 0, "failed", 1, 0.1, None, "E", "boom")])
    assert (await store.get_job(job_id)).status == "failed"  # type: ignore[union-attr]


def test_retrying_an_ended_job_counts_against_the_limit(kit: StoreKit, run):
    """Retry reopens a job failed by its items: refused at the limit (nothing changes), else not."""

    async def main() -> None:
        store = kit.open()
        await finished_with_a_failure(store, "a")
        await store.create_job(new_job("b"), texts(1))
        with pytest.raises(TooManyActiveJobs, match="has 1 active jobs"):
            await store.retry_failed("a", max_active_jobs=1)
        job = await store.get_job("a")
        assert job is not None
        assert (job.status, job.counts.failed) == ("failed", 1)
        # A job still active reopens nothing: its retry is never refused.
        assert await store.retry_failed("b", max_active_jobs=1) == 0
        await store.request_cancel("b")
        assert await store.retry_failed("a", max_active_jobs=1) == 1
        assert (await store.get_job("a")).status == "queued"  # type: ignore[union-attr]

    run(main())


def test_retries_and_creates_racing_never_pass_the_limit(kit: StoreKit, run):
    """Five failed jobs retried and five creates, all at once, limit 3: 3 active after."""

    async def main() -> None:
        handles = await connected(kit, 10)
        for n in range(5):
            await finished_with_a_failure(handles[0], f"old{n}")

        async def attempt(n: int) -> bool:
            store = handles[n]
            try:
                if n < 5:
                    await store.retry_failed(f"old{n}", max_active_jobs=3)
                else:
                    await store.create_job(new_job(f"new{n}"), texts(1), max_active_jobs=3)
            except TooManyActiveJobs:
                return False
            return True

        passed = await asyncio.gather(*(attempt(n) for n in range(10)))
        assert passed.count(True) == 3
        active = [j for j in await handles[0].list_jobs() if j.status == "queued"]
        assert len(active) == 3

    run(main())
