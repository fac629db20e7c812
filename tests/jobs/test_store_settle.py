"""The settle rule in every store: a job whose every item failed ends ``failed``, visibly.

Part of the store contract (memory, SQLite, PostgreSQL): the rule is `conveyor.jobs.settle`.
"""

import json

import pytest

from conveyor.jobs.errors import JobStateError
from conveyor.jobs.model import ItemResult, JobOptions, NewJob

from .conftest import StoreKit


def new_job(job_id: str = "job-1") -> NewJob:
    return NewJob(id=job_id, task="t", options=JobOptions(concurrency=3), created_at=1.0)


def texts(n: int) -> list[str]:
    return [json.dumps({"n": i}) for i in range(n)]


def ok(index: int) -> ItemResult:
    return ItemResult("job-1", index, "succeeded", 1, 0.5, json.dumps(index))


def failed(index: int, message: str = "bad input") -> ItemResult:
    return ItemResult("job-1", index, "failed", 1, 0.25, None, "ValueError", message)


def test_a_job_whose_only_item_failed_ends_failed_with_its_error(kit: StoreKit, run):
    """One item whose task raised: status failed, the error's type and message, a final step."""

    async def main() -> None:
        store = kit.open()
        await store.create_job(new_job(), texts(1))
        await store.claim("w1", limit=1, lease_s=10)
        await store.set_progress("job-1", inflight=0.1, step="Discovering...")
        await store.record("w1", [failed(0)])
        job = await store.get_job("job-1")
        assert job is not None
        assert (job.status, job.error) == ("failed", "ValueError: bad input")
        assert (job.progress, job.counts.failed, job.finished_at) == (100.0, 1, kit.wall.now)
        assert job.step == "Failed: ValueError: bad input"

    run(main())


def test_a_job_whose_every_item_failed_names_the_first_failure(kit: StoreKit, run):
    """Several items, all failed (in any order): failed, the error names the lowest index."""

    async def main() -> None:
        store = kit.open()
        await store.create_job(new_job(), texts(3))
        await store.claim("w1", limit=3, lease_s=10)
        await store.record("w1", [failed(2, "third")])
        await store.record("w1", [failed(1, "second"), failed(0, "first")])
        job = await store.get_job("job-1")
        assert job is not None
        assert job.status == "failed"
        assert job.error == "all 3 items failed; the first, item 0: ValueError: first"

    run(main())


def test_one_success_is_enough_for_completed_with_the_failures_counted(kit: StoreKit, run):
    """A partial failure completes: counts.failed tells it; no error; the step says it all."""

    async def main() -> None:
        store = kit.open()
        await store.create_job(new_job(), texts(3))
        await store.claim("w1", limit=3, lease_s=10)
        await store.set_progress("job-1", inflight=0.5, step="Matching...")
        await store.record("w1", [failed(0), ok(1), failed(2)])
        job = await store.get_job("job-1")
        assert job is not None
        assert (job.status, job.error, job.counts.failed) == ("completed", None, 2)
        assert job.step == "Completed: 1 of 3 items succeeded, 2 failed"

    run(main())


def test_retry_failed_reopens_a_job_failed_by_its_items(kit: StoreKit, run):
    """A failed job's items run again: queued, error and step cleared, then it can complete."""

    async def main() -> None:
        store = kit.open()
        await store.create_job(new_job(), texts(2))
        await store.claim("w1", limit=2, lease_s=10)
        await store.record("w1", [failed(0), failed(1)])
        assert await store.retry_failed("job-1", max_active_jobs=5) == 2
        job = await store.get_job("job-1")
        assert job is not None
        assert (job.status, job.error, job.step, job.finished_at) == ("queued", None, None, None)
        assert (job.counts.pending, job.counts.failed) == (2, 0)
        await store.claim("w2", limit=2, lease_s=10)
        await store.record("w2", [ok(0), failed(1, "again")])
        job = await store.get_job("job-1")
        assert job is not None
        assert (job.status, job.error, job.counts.failed) == ("completed", None, 1)

    run(main())


def test_a_job_that_could_not_run_cannot_retry_and_its_step_says_why(kit: StoreKit, run):
    """fail_job (unknown task): failed with the reason as step too; retry is refused."""

    async def main() -> None:
        store = kit.open()
        await store.create_job(new_job(), texts(2))
        await store.claim("w1", limit=1, lease_s=10)
        job = await store.fail_job("job-1", "unknown task 't'")
        assert (job.status, job.step) == ("failed", "Failed: unknown task 't'")
        with pytest.raises(JobStateError, match="could not run"):
            await store.retry_failed("job-1")

    run(main())


def test_a_cancelled_job_shows_its_end_as_its_step(kit: StoreKit, run):
    """Cancelled while an item ran: once it settles, the step says how far the job got."""

    async def main() -> None:
        store = kit.open()
        await store.create_job(new_job(), texts(3))
        await store.claim("w1", limit=1, lease_s=10)
        await store.set_progress("job-1", inflight=0.5, step="Working...")
        await store.request_cancel("job-1")
        await store.record("w1", [ok(0)])
        job = await store.get_job("job-1")
        assert job is not None
        assert (job.status, job.step) == ("cancelled", "Cancelled: 1 of 3 items had run")

    run(main())
