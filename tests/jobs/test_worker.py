"""The worker on virtual time: batching, leases, crash takeover, cancel, graceful stop, progress."""

import asyncio
import json
from collections import Counter
from typing import Any

import pytest

import conveyor
from conveyor.jobs import App, Job, Jobs, MemoryStore, SqliteStore, Worker, WorkerOptions
from conveyor.jobs.model import ItemResult
from conveyor.testing import VirtualClock

FAST = WorkerOptions(lease_s=30, claim_size=50, batch_size=100, flush_interval_s=0.5)


class CountingStore(MemoryStore):
    """A memory store that remembers the size of every batch of results."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    async def record(self, worker_id: str, results):
        self.batches.append(len(results))
        return await super().record(worker_id, results)


def sleeper_app(seconds: float, runs: Counter[int] | None = None) -> App:
    app = App()

    @app.task("sleep")
    async def sleep(item, ctx):
        if runs is not None:
            runs[ctx.index] += 1
        await asyncio.sleep(seconds)
        return item

    return app


def test_a_worker_runs_a_job_to_completion_in_batches(run):
    """Every item is settled and stored with its result, written in batches of batch_size."""
    store = CountingStore()
    app = App()

    @app.task("double")
    async def double(x):
        return x * 2

    async def main() -> None:
        jobs = Jobs(store, app=app)
        job = await jobs.submit("double", range(250), concurrency=20)
        await Worker(store, app, options=FAST).run(until_idle=True)
        done = await jobs.get(job.id)
        assert (done.status, done.counts.succeeded) == ("completed", 250)
        results = [i.result async for i in jobs.results(job.id)]
        assert results == [2 * i for i in range(250)]
        assert sum(store.batches) == 250
        assert max(store.batches) <= 100
        assert len(store.batches) < 20  # batched, not one write per item

    run(main())


def test_slow_items_are_checkpointed_within_the_flush_interval(run, clock: VirtualClock):
    """A result is in the store at most flush_interval_s after its item settles."""
    store = MemoryStore()
    app = sleeper_app(10.0)

    async def main() -> None:
        jobs = Jobs(store, app=app)
        job = await jobs.submit("sleep", [1, 2], concurrency=1)
        task = asyncio.create_task(Worker(store, app, options=FAST).run(until_idle=True))
        await asyncio.sleep(10.0 + FAST.flush_interval_s + 0.01)
        first = await jobs.get(job.id)
        assert first.counts.succeeded == 1
        await task
        assert clock.now == pytest.approx(20.0, abs=1.0)

    run(main())


def test_the_task_gets_its_context_and_reports_steps(run):
    """ctx carries the job id, index and a stable idempotency key; progress and step are stored."""
    store = MemoryStore()
    app = App()
    seen: list[tuple[str, int, str]] = []
    snapshots: list[tuple[float, str | None]] = []

    @app.task("analyze")
    async def analyze(item, ctx):
        seen.append((ctx.job_id, ctx.index, ctx.idempotency_key))
        for percent, step in ((10, "Discovering..."), (50, "Matching APIs..."), (90, "Analysing")):
            ctx.progress(percent, step)
            await asyncio.sleep(5)
        return {"apis": 3}

    async def main() -> None:
        jobs = Jobs(store, app=app)
        job = await jobs.submit("analyze", [{"repo": "x"}])
        worker = asyncio.create_task(Worker(store, app, options=FAST).run(until_idle=True))
        snapshots.extend([(s.progress, s.step) async for s in jobs.watch(job.id, interval_s=1.0)])
        await worker
        assert seen == [(job.id, 0, f"{job.id}/0")]
        assert (10.0, "Discovering...") in snapshots
        assert (50.0, "Matching APIs...") in snapshots
        assert (90.0, "Analysing") in snapshots
        assert snapshots[-1][0] == 100.0
        progress = [p for p, _ in snapshots]
        assert progress == sorted(progress)

    run(main())


def test_failures_are_settled_with_their_reason_after_the_jobs_attempts(run):
    """A transient error is retried up to attempts; a bad value fails at once; both are kept."""
    store = MemoryStore()
    app = App()
    calls: Counter[int] = Counter()

    @app.task("flaky")
    async def flaky(n, ctx):
        calls[n] += 1
        if n == 0:
            raise TimeoutError("upstream slow")
        if n == 1:
            raise ValueError("bad record")
        if n == 2:
            return {1, 2}  # not JSON: the item fails
        return n

    async def main() -> None:
        jobs = Jobs(store, app=app)
        job = await jobs.submit("flaky", [0, 1, 2, 3], attempts=3)
        await Worker(store, app, options=FAST).run(until_idle=True)
        done = await jobs.get(job.id)
        assert (done.status, done.counts.succeeded, done.counts.failed) == ("completed", 1, 3)
        failed = {i.index: i async for i in jobs.results(job.id, state="failed")}
        assert (failed[0].error_type, failed[0].error_message, failed[0].attempts) == (
            "TimeoutError",
            "upstream slow",
            3,
        )
        assert (failed[1].error_type, failed[1].attempts) == ("ValueError", 1)
        assert failed[2].error_type == "TypeError"
        assert calls == Counter({0: 3, 1: 1, 2: 1, 3: 1})

    run(main())


def test_a_worker_leaves_jobs_of_tasks_it_lacks_for_a_worker_that_has_them(run):
    """A job whose task this worker lacks stays queued (not failed) and the right worker runs it."""
    store = MemoryStore()

    async def main() -> None:
        jobs = Jobs(store)  # no app: the task is not checked at submit
        job = await jobs.submit("sleep", [1, 2])
        other = App()

        @other.task("other")
        async def other_task(item):
            return item

        await Worker(store, other).run(until_idle=True)  # returns: nothing it can run
        assert (await jobs.get(job.id)).status == "queued"
        await Worker(store, sleeper_app(1)).run(until_idle=True)
        done = await jobs.get(job.id)
        assert (done.status, done.counts.succeeded) == ("completed", 2)

    run(main())


def test_job_limiters_come_from_the_app_by_name(run):
    """The job's named limiter is the app's: its concurrency cap holds across the job."""
    store = MemoryStore()
    app = App(limiters=[conveyor.Limiter("api", concurrency=2)])
    active = 0
    most = 0

    @app.task("call")
    async def call(item):
        nonlocal active, most
        active += 1
        most = max(most, active)
        await asyncio.sleep(1)
        active -= 1

    async def main() -> None:
        jobs = Jobs(store, app=app)
        job = await jobs.submit("call", range(10), concurrency=10, limiters=["api"])
        await Worker(store, app, options=FAST).run(until_idle=True)
        assert (await jobs.get(job.id)).counts.succeeded == 10
        assert most == 2
        unknown = await Jobs(store).submit("call", [1], limiters=["nope"])
        await Worker(store, app, options=FAST).run(until_idle=True)
        failed = await jobs.get(unknown.id)
        assert failed.status == "failed"
        assert "unknown limiter(s) 'nope'" in (failed.error or "")

    run(main())


def test_a_long_item_keeps_its_lease_so_no_other_worker_takes_it(run):
    """Items running far longer than lease_s stay with their worker: each runs exactly once."""
    store = MemoryStore()
    runs: Counter[int] = Counter()
    app = sleeper_app(100.0, runs)
    options = WorkerOptions(lease_s=10, flush_interval_s=0.5, claim_size=2, poll_interval_s=1)

    async def main() -> None:
        jobs = Jobs(store, app=app)
        job = await jobs.submit("sleep", range(4), concurrency=2)
        a = Worker(store, app, options=options, worker_id="a")
        b = Worker(store, app, options=options, worker_id="b")
        await asyncio.gather(a.run(until_idle=True), b.run(until_idle=True))
        assert (await jobs.get(job.id)).counts.succeeded == 4
        assert runs == Counter(dict.fromkeys(range(4), 1))

    run(main())


def test_a_dead_workers_items_are_taken_over_after_its_lease(run, clock: VirtualClock):
    """Items claimed by a worker that never renews are re-queued after lease_s and completed."""
    store = MemoryStore()
    runs: Counter[int] = Counter()
    app = sleeper_app(1.0, runs)
    options = WorkerOptions(lease_s=10, flush_interval_s=0.5, poll_interval_s=1)

    async def main() -> None:
        jobs = Jobs(store, app=app)
        job = await jobs.submit("sleep", range(5))
        await store.claim("ghost", limit=3, lease_s=10)  # then the ghost dies
        await store.started("ghost", [(job.id, 1)])  # item 2 never started
        await store.record("ghost", [ItemResult(job.id, 0, "succeeded", 1, 0.1, "0")])
        await Worker(store, app, options=options).run(until_idle=True)
        done = await jobs.get(job.id)
        assert (done.status, done.counts.succeeded) == ("completed", 5)
        assert clock.now >= 10
        assert runs == Counter({1: 1, 2: 1, 3: 1, 4: 1})  # item 0 was done: not run again
        attempts = {i.index: i.attempts async for i in jobs.results(job.id)}
        assert attempts == {0: 1, 1: 2, 2: 1, 3: 1, 4: 1}

    run(main())


def test_cancel_stops_a_running_job_and_cancels_in_flight_items(run, clock: VirtualClock):
    """Cancel: nothing new starts, in-flight items are cancelled, the counts say what was done."""
    store = MemoryStore()
    runs: Counter[int] = Counter()
    app = sleeper_app(10.0, runs)

    async def main() -> None:
        jobs = Jobs(store, app=app)
        job = await jobs.submit("sleep", range(10), concurrency=2)
        worker = asyncio.create_task(Worker(store, app, options=FAST).run(until_idle=True))
        await asyncio.sleep(15)  # items 0, 1 done; 2, 3 in flight
        await jobs.cancel(job.id)
        done = await jobs.wait(job.id, interval_s=0.25)
        await worker
        assert done.status == "cancelled"
        assert (done.counts.succeeded, done.counts.cancelled) == (2, 8)
        assert clock.now < 20  # the in-flight items did not run to their end
        assert sum(runs.values()) == 4

    run(main())


def test_stop_lets_in_flight_items_finish_and_releases_the_rest(run):
    """stop(): no new claims; in-flight items finish within grace_s; unstarted ones go back."""
    store = MemoryStore()
    app = sleeper_app(5.0)
    options = WorkerOptions(claim_size=10, flush_interval_s=0.5, grace_s=30)

    async def main() -> None:
        jobs = Jobs(store, app=app)
        job = await jobs.submit("sleep", range(10), concurrency=2)
        worker = Worker(store, app, options=options)
        task = asyncio.create_task(worker.run())
        await asyncio.sleep(1)
        worker.stop()
        await task
        after = await jobs.get(job.id)
        assert (after.counts.succeeded, after.counts.pending, after.counts.running) == (2, 8, 0)
        assert not await store.renew(worker.id, lease_s=1)  # the lease is gone too

    run(main())


def test_stop_after_the_grace_period_releases_in_flight_items_unrecorded(run, clock):
    """Items still running when grace_s ends are released to pending, not recorded as done."""
    store = MemoryStore()
    app = sleeper_app(100.0)
    options = WorkerOptions(flush_interval_s=0.5, grace_s=3)

    async def main() -> None:
        jobs = Jobs(store, app=app)
        job = await jobs.submit("sleep", range(3), concurrency=3)
        worker = Worker(store, app, options=options)
        task = asyncio.create_task(worker.run())
        await asyncio.sleep(1)
        worker.stop()
        await task
        assert clock.now < 6
        after = await jobs.get(job.id)
        assert (after.counts.pending, after.counts.running, after.counts.settled) == (3, 0, 0)

    run(main())


def test_retry_failed_runs_only_the_failed_items_again(run):
    """After retry-failed, a worker runs the failed items, and only those."""
    store = MemoryStore()
    app = App()
    runs: Counter[int] = Counter()
    broken = {1, 3}

    @app.task("fix")
    async def fix(n, ctx):
        runs[n] += 1
        if n in broken:
            raise ValueError(f"{n} is broken")
        return n

    async def main() -> None:
        jobs = Jobs(store, app=app)
        job = await jobs.submit("fix", range(5))
        await Worker(store, app, options=FAST).run(until_idle=True)
        assert (await jobs.get(job.id)).counts.failed == 2
        broken.clear()
        assert await jobs.retry_failed(job.id) == 2
        await Worker(store, app, options=FAST).run(until_idle=True)
        done = await jobs.get(job.id)
        assert (done.status, done.counts.succeeded, done.counts.failed) == ("completed", 5, 0)
        assert runs == Counter({0: 1, 1: 2, 2: 1, 3: 2, 4: 1})

    run(main())


def test_the_worker_runs_on_the_sqlite_store_too(tmp_path):
    """The same worker drives the SQLite store to completion, with results in the file."""
    app = App()

    @app.task("square")
    def square(x):  # a plain function: runs in a thread
        return x * x

    async def main() -> tuple[Job, list[Any]]:
        store = SqliteStore(tmp_path / "jobs.db")
        jobs = Jobs(store, app=app)
        job = await jobs.submit("square", range(300), concurrency=8)
        await Worker(store, app, options=FAST).run(until_idle=True)
        done = await jobs.get(job.id)
        values = [i.result async for i in jobs.results(job.id, state="succeeded")]
        await jobs.close()
        return done, values

    done, values = VirtualClock().run(main())
    assert (done.status, done.counts.succeeded) == ("completed", 300)
    assert values == [x * x for x in range(300)]


def test_worker_options_are_validated_with_the_fix(run):
    """Bad worker options fail at construction naming the argument."""
    with pytest.raises(conveyor.ConfigError, match="lease_s=0"):
        WorkerOptions(lease_s=0)
    with pytest.raises(conveyor.ConfigError, match="batch_size"):
        WorkerOptions(batch_size=0)
    with pytest.raises(conveyor.ConfigError, match="below lease_s / 3"):
        WorkerOptions(lease_s=3, flush_interval_s=1)


def test_json_results_round_trip(run):
    """Results keep their JSON shape (nested objects, unicode)."""
    store = MemoryStore()
    app = App()

    @app.task("echo")
    async def echo(item):
        return {"got": item, "text": "naïve ✓"}

    async def main() -> None:
        jobs = Jobs(store, app=app)
        job = await jobs.submit("echo", [{"a": [1, 2]}])
        await Worker(store, app, options=FAST).run(until_idle=True)
        [item] = [i async for i in jobs.results(job.id)]
        assert item.result == {"got": {"a": [1, 2]}, "text": "naïve ✓"}
        assert json.loads(json.dumps(item.to_dict()))["state"] == "succeeded"

    run(main())


class FlakyStore(MemoryStore):
    """A memory store whose renew and record fail once each, like a busy database file."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = {"renew": 1, "record": 1}

    def _maybe_fail(self, name: str) -> None:
        if self.failures[name]:
            self.failures[name] -= 1
            msg = f"database is locked ({name})"
            raise OSError(msg)

    async def renew(self, worker_id: str, *, lease_s: float) -> bool:
        self._maybe_fail("renew")
        return await super().renew(worker_id, lease_s=lease_s)

    async def record(self, worker_id: str, results):
        self._maybe_fail("record")
        return await super().record(worker_id, results)


def test_a_store_hiccup_on_the_heartbeat_loses_neither_lease_nor_results(run, caplog):
    """A failed renewal or batch write is retried on the next beat; every item ends once."""
    store = FlakyStore()
    runs: Counter[int] = Counter()
    app = sleeper_app(2.0, runs)
    options = WorkerOptions(lease_s=3, flush_interval_s=0.5)

    async def main() -> None:
        jobs = Jobs(store, app=app)
        job = await jobs.submit("sleep", range(6), concurrency=2)
        await Worker(store, app, options=options).run(until_idle=True)
        done = await jobs.get(job.id)
        assert (done.status, done.counts.succeeded) == ("completed", 6)
        assert store.failures == {"renew": 0, "record": 0}
        assert runs == Counter(dict.fromkeys(range(6), 1))

    run(main())
    # The failed renewal is the heartbeat's, or the one made before a claim.
    assert "failed; retrying" in caplog.text or "before a claim failed" in caplog.text


def test_submit_takes_options_or_single_options_not_both(run):
    """Mixing options= with concurrency= is refused instead of silently ignoring one."""

    async def main() -> None:
        jobs = Jobs(MemoryStore())
        with pytest.raises(conveyor.ConfigError, match="not both"):
            await jobs.submit("t", [1], options=conveyor.JobOptions(), concurrency=5)
        with pytest.raises(conveyor.ConfigError, match="concurrency=0"):
            await jobs.submit("t", [1], concurrency=0)

    run(main())


def test_a_job_waiting_for_an_unreachable_redis_says_so_without_its_password(run, caplog):
    """The step "waiting: Redis at ... is unreachable" names the server, never its password."""
    from conveyor.limits.redis_limiter import RedisLimits, share_limits

    from ..limits.test_redis_limiter import DownRedis

    password = "hunter2-redis-password"  # noqa: S105 - a made-up test value
    store = MemoryStore()
    app = App(limiters=[conveyor.Limiter("api", requests_per_second=10)])

    @app.task("call", limiters=["api"])
    async def call(item):
        return item

    share_limits(app, RedisLimits(f"redis://:{password}@cache:6379/0", client=DownRedis()))

    async def main() -> list[str]:
        jobs = Jobs(store, app=app)
        job = await jobs.submit("call", [1])
        worker = asyncio.create_task(Worker(store, app, options=FAST).run(until_idle=True))
        steps: list[str] = []
        async for snapshot in jobs.watch(job.id, interval_s=0.25):
            if snapshot.step is not None:
                steps.append(snapshot.step)
            if snapshot.step is not None and snapshot.step.startswith("waiting:"):
                await jobs.cancel(job.id)
        await worker
        return steps

    with caplog.at_level("WARNING"):
        steps = run(main())
    waiting = [s for s in steps if s.startswith("waiting:")]
    assert waiting
    assert "redis://***@cache:6379/0" in waiting[0]
    assert all(password not in s for s in steps)
    assert all(password not in r.getMessage() for r in caplog.records)
