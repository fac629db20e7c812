"""The store contract: every store (memory, SQLite; PostgreSQL later) passes these same tests."""

import asyncio
import json
from collections.abc import Iterator

import pytest

from conveyor.jobs.errors import InvalidJob, JobNotFound, JobStateError
from conveyor.jobs.model import ItemResult, JobOptions, NewJob

from .conftest import StoreKit


def new_job(job_id: str = "job-1", task: str = "t", created_at: float = 1.0) -> NewJob:
    return NewJob(id=job_id, task=task, options=JobOptions(concurrency=3), created_at=created_at)


def texts(n: int) -> list[str]:
    return [json.dumps({"n": i}) for i in range(n)]


def ok(job_id: str, index: int, value: object = None, attempts: int = 1) -> ItemResult:
    return ItemResult(job_id, index, "succeeded", attempts, 0.5, json.dumps(value))


def failed(job_id: str, index: int) -> ItemResult:
    return ItemResult(job_id, index, "failed", 2, 0.25, error_type="E", error_message="boom")


def test_create_job_stores_every_item_pending(kit: StoreKit, run):
    """A new job is queued, with all its items pending, and reads back the same."""

    async def main() -> None:
        store = kit.open()
        job = await store.create_job(new_job(), texts(5))
        assert job.status == "queued"
        assert (job.counts.total, job.counts.pending) == (5, 5)
        assert await store.get_job("job-1") == job
        items = await store.items("job-1")
        assert [i.input for i in items] == [{"n": i} for i in range(5)]
        assert {i.state for i in items} == {"pending"}
        assert job.options == JobOptions(concurrency=3)

    run(main())


def test_an_empty_job_is_refused_and_not_written(kit: StoreKit, run):
    """A job without items raises InvalidJob and leaves no job behind."""

    async def main() -> None:
        store = kit.open()
        with pytest.raises(InvalidJob, match="no items"):
            await store.create_job(new_job(), [])
        assert await store.list_jobs() == []

    run(main())


def test_items_that_raise_midway_leave_nothing_written(kit: StoreKit, run):
    """If the items iterator raises after some items, neither the job nor any item is stored."""

    def items() -> Iterator[str]:
        yield from texts(3)
        msg = "bad item"
        raise InvalidJob(msg)

    async def main() -> None:
        store = kit.open()
        with pytest.raises(InvalidJob, match="bad item"):
            await store.create_job(new_job(), items())
        assert await store.get_job("job-1") is None
        assert await store.list_jobs() == []

    run(main())


def test_list_jobs_newest_first_and_by_status(kit: StoreKit, run):
    """Jobs list newest first (ids sort by time), and filter by status."""

    async def main() -> None:
        store = kit.open()
        for name in ("a", "b", "c"):
            await store.create_job(new_job(name), texts(1))
        await store.request_cancel("b")
        assert [j.id for j in await store.list_jobs()] == ["c", "b", "a"]
        assert [j.id for j in await store.list_jobs(limit=2)] == ["c", "b"]
        assert [j.id for j in await store.list_jobs(status="cancelled")] == ["b"]
        assert [j.id for j in await store.list_jobs(status="queued")] == ["c", "a"]

    run(main())


def test_claim_takes_the_lowest_pending_items_of_the_oldest_job(kit: StoreKit, run):
    """A claim moves the lowest indexes of the oldest active job to running, and counts them."""

    async def main() -> None:
        store = kit.open()
        await store.create_job(new_job("a"), texts(5))
        await store.create_job(new_job("b"), texts(5))
        claim = await store.claim("w1", limit=3, lease_s=10)
        assert claim is not None
        assert claim.job.id == "a"
        assert [(i.index, json.loads(i.input_json)) for i in claim.items] == [
            (0, {"n": 0}),
            (1, {"n": 1}),
            (2, {"n": 2}),
        ]
        assert claim.job.status == "running"
        assert claim.job.started_at == kit.wall.now
        assert (claim.job.counts.pending, claim.job.counts.running) == (2, 3)
        specific = await store.claim("w1", limit=10, lease_s=10, job_id="b")
        assert specific is not None
        assert [i.index for i in specific.items] == [0, 1, 2, 3, 4]
        rest = await store.claim("w2", limit=10, lease_s=10)
        assert rest is not None
        assert (rest.job.id, [i.index for i in rest.items]) == ("a", [3, 4])
        assert await store.claim("w2", limit=10, lease_s=10) is None

    run(main())


def test_concurrent_claims_by_several_workers_never_share_an_item(kit: StoreKit, run):
    """Workers claiming at the same time, on separate handles, get disjoint items covering all."""

    async def main() -> None:
        handles = [kit.open() for _ in range(4)]
        await handles[0].create_job(new_job(), texts(300))
        got: dict[str, list[int]] = {f"w{i}": [] for i in range(4)}

        async def worker(n: int) -> None:
            store = handles[n]
            while (claim := await store.claim(f"w{n}", limit=7, lease_s=10)) is not None:
                got[f"w{n}"].extend(i.index for i in claim.items)

        await asyncio.gather(*(worker(n) for n in range(4)))
        every = [i for indexes in got.values() for i in indexes]
        assert sorted(every) == list(range(300))
        job = await handles[0].get_job("job-1")
        assert job is not None
        assert (job.counts.pending, job.counts.running) == (0, 300)

    run(main())


def budgeted(job_id: str, created_at: float = 1.0) -> NewJob:
    options = JobOptions(concurrency=3, max_cost_usd=5.0)
    return NewJob(id=job_id, task="t", options=options, created_at=created_at)


def test_a_budgeted_job_runs_on_one_worker_at_a_time(kit: StoreKit, run):
    """While w1 has items of a budgeted job running, w2 is given the next job, not it.

    Once w1 has none running (recorded, or handed back), w2 may take the budgeted job over.
    """

    async def main() -> None:
        store = kit.open()
        await store.create_job(budgeted("a"), texts(6))
        await store.create_job(new_job("b", created_at=2.0), texts(6))
        first = await store.claim("w1", limit=2, lease_s=10)
        assert first is not None
        assert (first.job.id, [i.index for i in first.items]) == ("a", [0, 1])
        # Passed over for the next job; asked for by id: nothing.
        other = await store.claim("w2", limit=2, lease_s=10)
        assert other is not None
        assert other.job.id == "b"
        assert await store.claim("w2", limit=2, lease_s=10, job_id="a") is None
        # The worker that has it claims more of it.
        more = await store.claim("w1", limit=2, lease_s=10, job_id="a")
        assert more is not None
        assert [i.index for i in more.items] == [2, 3]
        assert await store.record("w1", [ok("a", i) for i in range(4)]) == 4
        taken = await store.claim("w2", limit=1, lease_s=10, job_id="a")
        assert taken is not None
        assert [i.index for i in taken.items] == [4]
        assert await store.claim("w1", limit=1, lease_s=10, job_id="a") is None
        # Handed back: free again, for anyone.
        assert await store.release("w2", [("a", 4)]) == 1
        again = await store.claim("w1", limit=1, lease_s=10, job_id="a")
        assert again is not None
        assert [i.index for i in again.items] == [4]

    run(main())


def test_a_budgeted_job_of_a_dead_worker_is_taken_over_after_its_lease(kit: StoreKit, run):
    """w1 dies holding items of a budgeted job: w2 gets it only once w1's lease lapsed."""

    async def main() -> None:
        store = kit.open()
        await store.create_job(budgeted("a"), texts(4))
        assert await store.claim("w1", limit=2, lease_s=10) is not None
        assert await store.claim("w2", limit=4, lease_s=10) is None
        kit.wall.advance(11)
        assert await store.requeue_expired() == 2
        claim = await store.claim("w2", limit=4, lease_s=10)
        assert claim is not None
        assert [i.index for i in claim.items] == [0, 1, 2, 3]

    run(main())


def test_concurrent_claims_of_a_budgeted_job_go_to_one_worker(kit: StoreKit, run):
    """Workers claiming a new budgeted job at once, on separate handles: one gets items of it.

    Ten jobs in turn, each claimed by four workers at the same moment; then the winner of the
    last one claims again, and the others still get nothing.
    """

    async def main() -> None:
        handles = [kit.open() for _ in range(4)]
        for h in handles:  # connected, so that the claims below overlap
            assert await h.get_job("none") is None

        async def worker(n: int, job_id: str) -> list[int]:
            claim = await handles[n].claim(f"w{n}", limit=5, lease_s=10, job_id=job_id)
            return [] if claim is None else [i.index for i in claim.items]

        winner = -1
        for j in range(10):
            job_id = f"a{j}"
            await handles[0].create_job(budgeted(job_id, created_at=j), texts(40))
            got = await asyncio.gather(*(worker(n, job_id) for n in range(4)))
            holders = [n for n, indexes in enumerate(got) if indexes]
            assert len(holders) == 1, (job_id, got)
            winner = holders[0]
        got = await asyncio.gather(*(worker(n, "a9") for n in range(4)))
        assert [n for n, indexes in enumerate(got) if indexes] == [winner]

    run(main())


def test_concurrent_claims_of_any_job_keep_each_budgeted_job_on_one_worker(kit: StoreKit, run):
    """Six workers claim at once, by age, among two budgeted jobs and one without a budget."""

    async def main() -> None:
        handles = [kit.open() for _ in range(6)]
        for h in handles:  # connected, so that the claims below overlap
            assert await h.get_job("none") is None
        await handles[0].create_job(budgeted("a", created_at=1.0), texts(30))
        await handles[0].create_job(budgeted("b", created_at=2.0), texts(30))
        await handles[0].create_job(new_job("c", created_at=3.0), texts(30))
        holders: dict[str, set[int]] = {"a": set(), "b": set(), "c": set()}
        for _ in range(3):

            async def worker(n: int) -> None:
                claim = await handles[n].claim(f"w{n}", limit=2, lease_s=10)
                if claim is not None:
                    holders[claim.job.id].add(n)

            await asyncio.gather(*(worker(n) for n in range(6)))
        assert len(holders["a"]) == 1, holders
        assert len(holders["b"]) == 1, holders
        assert holders["a"] != holders["b"]  # a's holder keeps claiming a, the oldest
        assert len(holders["c"]) >= 1

    run(main())


def test_record_settles_a_batch_and_completes_the_job(kit: StoreKit, run):
    """Recorded results are readable, counted, and the last one completes the job."""

    async def main() -> None:
        store = kit.open()
        await store.create_job(new_job(), texts(4))
        await store.claim("w1", limit=4, lease_s=10)
        kit.wall.advance(3)
        n = await store.record("w1", [ok("job-1", 0, {"r": 0}), failed("job-1", 1)])
        assert n == 2
        job = await store.get_job("job-1")
        assert job is not None
        assert job.status == "running"
        assert (job.counts.succeeded, job.counts.failed, job.counts.running) == (1, 1, 2)
        assert await store.record("w1", [ok("job-1", 2), ok("job-1", 3)]) == 2
        job = await store.get_job("job-1")
        assert job is not None
        assert job.status == "completed"
        assert job.finished_at == kit.wall.now
        assert job.progress == 100.0
        assert job.summary.latency_mean_s == pytest.approx((0.5 * 3 + 0.25) / 4)
        items = await store.items("job-1")
        assert items[0].result == {"r": 0}
        assert items[0].attempts == 1
        assert (items[1].state, items[1].error_type, items[1].error_message) == (
            "failed",
            "E",
            "boom",
        )
        assert items[1].attempts == 2
        assert items[1].result is None

    run(main())


def test_results_of_items_a_worker_does_not_hold_are_ignored(kit: StoreKit, run):
    """Record is fenced: results for items not running under that worker change nothing."""

    async def main() -> None:
        store = kit.open()
        await store.create_job(new_job(), texts(4))
        await store.claim("w1", limit=2, lease_s=10)  # items 0, 1
        await store.claim("w2", limit=1, lease_s=10)  # item 2
        # w1 reports 0 (its own), 2 (w2's) and 3 (pending): only 0 is recorded.
        n = await store.record("w1", [ok("job-1", 0), ok("job-1", 2), ok("job-1", 3)])
        assert n == 1
        job = await store.get_job("job-1")
        assert job is not None
        assert job.counts == type(job.counts)(
            total=4, pending=1, running=2, succeeded=1, failed=0, cancelled=0
        )
        assert await store.record("w1", [ok("job-1", 0)]) == 0  # already settled

    run(main())


def test_a_lapsed_lease_requeues_the_items_and_counts_only_started_attempts(kit: StoreKit, run):
    """After lease_s without renewal, the items go back; only the started one counts an attempt."""

    async def main() -> None:
        store = kit.open()
        await store.create_job(new_job(), texts(3))
        await store.claim("dead", limit=2, lease_s=10)
        assert await store.started("dead", [("job-1", 0), ("job-1", 2)]) == 1  # 2: not claimed
        kit.wall.advance(9.9)
        assert await store.requeue_expired() == 0
        kit.wall.advance(0.2)
        assert await store.requeue_expired() == 2
        job = await store.get_job("job-1")
        assert job is not None
        assert (job.counts.pending, job.counts.running) == (3, 0)
        assert not await store.renew("dead", lease_s=10)
        assert await store.record("dead", [ok("job-1", 0)]) == 0
        claim = await store.claim("alive", limit=5, lease_s=10)
        assert claim is not None
        assert [(i.index, i.attempts) for i in claim.items] == [(0, 1), (1, 0), (2, 0)]

    run(main())


def test_renewing_keeps_the_lease(kit: StoreKit, run):
    """A renewed lease lasts lease_s from the renewal, so the items stay with their worker."""

    async def main() -> None:
        store = kit.open()
        await store.create_job(new_job(), texts(1))
        await store.claim("w1", limit=1, lease_s=10)
        for _ in range(5):
            kit.wall.advance(6)
            assert await store.renew("w1", lease_s=10)
            assert await store.requeue_expired() == 0
        assert await store.record("w1", [ok("job-1", 0)]) == 1

    run(main())


def test_release_puts_items_back_and_release_all_drops_the_lease(kit: StoreKit, run):
    """Releasing named items makes them pending; releasing all ends the lease (job: queued)."""

    async def main() -> None:
        store = kit.open()
        await store.create_job(new_job(), texts(4))
        await store.claim("w1", limit=4, lease_s=10)
        assert await store.release("w1", [("job-1", 3), ("job-1", 99)]) == 1
        assert await store.release("w2", [("job-1", 2)]) == 0  # not w2's
        assert await store.release("w1") == 3
        assert not await store.renew("w1", lease_s=10)
        job = await store.get_job("job-1")
        assert job is not None
        assert (job.counts.pending, job.counts.running, job.status) == (4, 0, "queued")
        items = await store.items("job-1")
        assert [i.attempts for i in items] == [0, 0, 0, 0]

    run(main())


def test_cancel_without_running_items_cancels_at_once(kit: StoreKit, run):
    """Cancelling a job with nothing running cancels every pending item and ends the job."""

    async def main() -> None:
        store = kit.open()
        await store.create_job(new_job(), texts(3))
        job = await store.request_cancel("job-1")
        assert job.status == "cancelled"
        assert (job.counts.cancelled, job.counts.pending) == (3, 0)
        assert await store.claim("w1", limit=3, lease_s=10) is None
        assert (await store.request_cancel("job-1")).status == "cancelled"

    run(main())


def test_cancel_with_running_items_waits_for_their_workers(kit: StoreKit, run):
    """With items running, the job is cancelling until they are recorded or released."""

    async def main() -> None:
        store = kit.open()
        await store.create_job(new_job(), texts(5))
        await store.claim("w1", limit=3, lease_s=10)
        job = await store.request_cancel("job-1")
        assert job.status == "cancelling"
        assert (job.counts.cancelled, job.counts.running) == (2, 3)
        assert await store.claim("w2", limit=3, lease_s=10) is None
        cancelled = ItemResult("job-1", 1, "cancelled", 1, None)
        await store.record("w1", [ok("job-1", 0), cancelled])
        assert await store.release("w1", [("job-1", 2)]) == 1  # released: cancelled too
        after = await store.get_job("job-1")
        assert after is not None
        assert after.status == "cancelled"
        assert (after.counts.succeeded, after.counts.cancelled) == (1, 4)

    run(main())


def test_a_dead_workers_items_in_a_cancelling_job_end_cancelled(kit: StoreKit, run):
    """Re-queueing a lapsed lease in a cancelling job cancels the items instead."""

    async def main() -> None:
        store = kit.open()
        await store.create_job(new_job(), texts(2))
        await store.claim("dead", limit=2, lease_s=10)
        await store.request_cancel("job-1")
        kit.wall.advance(11)
        assert await store.requeue_expired() == 2
        job = await store.get_job("job-1")
        assert job is not None
        assert (job.status, job.counts.cancelled) == ("cancelled", 2)

    run(main())


def test_retry_failed_reruns_only_failed_items_under_the_same_job(kit: StoreKit, run):
    """Retry-failed puts failed items back, reopens the job, and they can complete."""

    async def main() -> None:
        store = kit.open()
        await store.create_job(new_job(), texts(3))
        await store.claim("w1", limit=3, lease_s=10)
        await store.record("w1", [ok("job-1", 0), failed("job-1", 1), failed("job-1", 2)])
        assert (await store.get_job("job-1")).status == "completed"  # type: ignore[union-attr]
        assert await store.retry_failed("job-1") == 2
        job = await store.get_job("job-1")
        assert job is not None
        assert (job.status, job.counts.pending, job.counts.failed) == ("queued", 2, 0)
        assert job.finished_at is None
        claim = await store.claim("w2", limit=5, lease_s=10)
        assert claim is not None
        assert [(i.index, i.attempts) for i in claim.items] == [(1, 2), (2, 2)]
        await store.record("w2", [ok("job-1", 1), ok("job-1", 2)])
        job = await store.get_job("job-1")
        assert job is not None
        assert (job.status, job.counts.succeeded) == ("completed", 3)
        assert [i.attempts for i in await store.items("job-1")] == [1, 3, 3]
        assert await store.retry_failed("job-1") == 0

    run(main())


def test_retry_failed_of_a_cancelled_or_unknown_job_is_refused(kit: StoreKit, run):
    """A cancelled job cannot retry (JobStateError); an unknown id raises JobNotFound."""

    async def main() -> None:
        store = kit.open()
        await store.create_job(new_job(), texts(1))
        await store.request_cancel("job-1")
        with pytest.raises(JobStateError, match="cancelled"):
            await store.retry_failed("job-1")
        with pytest.raises(JobNotFound):
            await store.retry_failed("nope")
        with pytest.raises(JobNotFound):
            await store.request_cancel("nope")
        assert await store.get_job("nope") is None

    run(main())


def test_fail_job_ends_it_failed_with_the_reason(kit: StoreKit, run):
    """A job that cannot run is failed with its error; unsettled items are cancelled."""

    async def main() -> None:
        store = kit.open()
        await store.create_job(new_job(), texts(3))
        await store.claim("w1", limit=1, lease_s=10)
        job = await store.fail_job("job-1", "unknown task 't'")
        assert (job.status, job.error) == ("failed", "unknown task 't'")
        assert (job.counts.cancelled, job.counts.pending, job.counts.running) == (3, 0, 0)
        assert await store.claim("w1", limit=3, lease_s=10) is None

    run(main())


def test_progress_counts_settled_and_reported_in_flight_work(kit: StoreKit, run):
    """Progress is settled items plus the reported share of in-flight ones, with the step."""

    async def main() -> None:
        store = kit.open()
        await store.create_job(new_job(), texts(4))
        await store.claim("w1", limit=4, lease_s=10)
        await store.record("w1", [ok("job-1", 0)])
        await store.set_progress("job-1", inflight=0.5, step="Matching APIs...")
        job = await store.get_job("job-1")
        assert job is not None
        assert job.progress == pytest.approx(100 * 1.5 / 4)
        assert job.step == "Matching APIs..."
        await store.set_progress("job-1", inflight=1.0, step=None)
        job = await store.get_job("job-1")
        assert job is not None
        assert job.progress == pytest.approx(50.0)
        assert job.step == "Matching APIs..."  # a step of None keeps the last one

    run(main())


def test_items_page_by_state_in_index_order(kit: StoreKit, run):
    """Items are read in pages after an index, all of them or those of one state."""

    async def main() -> None:
        store = kit.open()
        await store.create_job(new_job(), texts(10))
        await store.claim("w1", limit=10, lease_s=10)
        await store.record("w1", [failed("job-1", i) for i in (1, 4, 7, 8)])
        page = await store.items("job-1", state="failed", limit=2)
        assert [i.index for i in page] == [1, 4]
        page = await store.items("job-1", state="failed", after=4, limit=10)
        assert [i.index for i in page] == [7, 8]
        assert [i.index for i in await store.items("job-1", after=7, limit=10)] == [8, 9]
        with pytest.raises(JobNotFound):
            await store.items("nope")

    run(main())


def test_a_large_batch_is_recorded_in_one_call(kit: StoreKit, run):
    """Thousands of results in one record call are all settled, and counted once."""

    async def main() -> None:
        store = kit.open()
        await store.create_job(new_job(), texts(5000))
        claimed = 0
        while (claim := await store.claim("w1", limit=1000, lease_s=10)) is not None:
            claimed += len(claim.items)
        assert claimed == 5000
        assert await store.record("w1", [ok("job-1", i, i) for i in range(5000)]) == 5000
        job = await store.get_job("job-1")
        assert job is not None
        assert (job.status, job.counts.succeeded) == ("completed", 5000)
        last = await store.items("job-1", after=4998)
        assert [i.result for i in last] == [4999]

    run(main())


def test_a_second_handle_sees_committed_state(kit: StoreKit, run):
    """What one handle commits, another handle (another process) reads."""

    async def main() -> None:
        writer, reader = kit.open(), kit.open()
        await writer.create_job(new_job(), texts(2))
        await writer.claim("w1", limit=2, lease_s=10)
        await writer.record("w1", [ok("job-1", 0, "x")])
        job = await reader.get_job("job-1")
        assert job is not None
        assert job.counts.succeeded == 1
        assert (await reader.items("job-1", state="succeeded"))[0].result == "x"

    run(main())


def test_a_claim_with_tasks_takes_only_jobs_of_those_tasks(kit: StoreKit, run):
    """claim(tasks=...) skips older jobs of other tasks; None claims any task."""

    async def main() -> None:
        store = kit.open()
        await store.create_job(new_job("job-1", task="other", created_at=1.0), texts(2))
        await store.create_job(new_job("job-2", task="mine", created_at=2.0), texts(2))
        assert await store.claim("w", limit=5, lease_s=10, tasks=["nope"]) is None
        claim = await store.claim("w", limit=5, lease_s=10, tasks=["mine"])
        assert claim is not None
        assert claim.job.id == "job-2"
        assert await store.claim("w", limit=5, lease_s=10, job_id="job-1", tasks=["mine"]) is None
        anyone = await store.claim("w", limit=5, lease_s=10)
        assert anyone is not None
        assert anyone.job.id == "job-1"

    run(main())


def test_started_counts_an_attempt_only_for_the_workers_running_items(kit: StoreKit, run):
    """started() is fenced like record(): another worker's or a pending item is not counted."""

    async def main() -> None:
        store = kit.open()
        await store.create_job(new_job(), texts(3))
        await store.claim("w1", limit=1, lease_s=10)
        assert await store.started("w2", [("job-1", 0)]) == 0
        assert await store.started("w1", [("job-1", 0), ("job-1", 1), ("nope", 0)]) == 1
        await store.record("w1", [ok("job-1", 0, attempts=0)])
        assert [i.attempts for i in await store.items("job-1")] == [1, 0, 0]

    run(main())


def test_set_budget_changes_only_the_budget_and_raises_the_version(kit: StoreKit, run):
    """set_budget stores the new max_cost_usd (or none), keeps the rest, and bumps the version."""

    async def main() -> None:
        store = kit.open()
        before = await store.create_job(new_job(), texts(2))
        raised = await store.set_budget("job-1", 2.5)
        assert raised.options.max_cost_usd == 2.5
        assert raised.options.concurrency == 3
        assert raised.version > before.version
        assert (raised.status, raised.counts.pending) == ("queued", 2)
        again = await store.get_job("job-1")
        assert again is not None
        assert again.options.max_cost_usd == 2.5
        removed = await store.set_budget("job-1", None)
        assert removed.options.max_cost_usd is None
        assert removed.version > raised.version

    run(main())


def test_set_budget_of_a_cancelled_or_unknown_job_or_a_bad_budget_is_refused(kit: StoreKit, run):
    """A bad budget is a ConfigError, a cancelled job a JobStateError, an unknown id JobNotFound."""
    from conveyor.errors import ConfigError

    async def main() -> None:
        store = kit.open()
        await store.create_job(new_job(), texts(1))
        with pytest.raises(ConfigError, match="max_cost_usd"):
            await store.set_budget("job-1", -1.0)
        job = await store.get_job("job-1")
        assert job is not None
        assert job.options.max_cost_usd is None
        await store.request_cancel("job-1")
        with pytest.raises(JobStateError, match="cancelled"):
            await store.set_budget("job-1", 1.0)
        with pytest.raises(JobNotFound):
            await store.set_budget("nope", 1.0)

    run(main())
