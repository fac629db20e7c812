"""A retried job's start, on every store: it moves forward by the time the job stood ended."""

from conveyor.jobs.model import ItemResult, JobOptions, NewJob

from .conftest import StoreKit


def failed(index: int) -> ItemResult:
    return ItemResult("job-1", index, "failed", 1, 0.25, error_type="E", error_message="boom")


def test_a_retry_moves_the_start_forward_by_the_idle_time_and_never_back(kit: StoreKit, run):
    """Reopened 30 s after it ended, a job started 30 s later; with the clock behind, as it was."""

    async def main() -> None:
        store = kit.open()
        job = NewJob(id="job-1", task="t", options=JobOptions(), created_at=1.0)
        await store.create_job(job, ["1", "2"])
        claim = await store.claim("w1", limit=2, lease_s=10)
        assert claim is not None
        assert claim.job.started_at is not None
        started = claim.job.started_at
        kit.wall.advance(5)
        await store.record("w1", [failed(0), failed(1)])
        kit.wall.advance(30)
        assert await store.retry_failed("job-1") == 2
        reopened = await store.get_job("job-1")
        assert reopened is not None
        assert reopened.started_at == started + 30
        await store.claim("w1", limit=2, lease_s=10)
        await store.record("w1", [failed(0), failed(1)])
        kit.wall.advance(-60)
        assert await store.retry_failed("job-1") == 2
        again = await store.get_job("job-1")
        assert again is not None
        assert again.started_at == started + 30

    run(main())
