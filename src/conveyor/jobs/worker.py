"""`Worker`: claims items of active jobs under a lease and runs them until told to stop.

The loop: re-queue the items of workers whose lease lapsed (dead workers), claim a batch of the
oldest active job's pending items, run that job (`JobRun`) until it has nothing left to claim,
and start over; with nothing to claim, wait ``poll_interval_s`` (or, on a store that notifies,
until work arrives). `stop()` (wired to SIGTERM
by ``conveyor worker``) stops claiming, lets in-flight items finish for ``grace_s``, releases
the rest to pending, and drops the lease: nothing is lost, and another worker takes over.

A store that cannot be reached (`StoreUnavailable`: a database outage, a dropped or silent
connection, a full disk) stops no worker: its calls are retried with a capped backoff, the
outage is logged once and its end once (`conveyor.jobs.outage`), finished results wait in
memory, and the worker carries on when the store is back.

A job whose spend budget (``max_cost_usd``) is reached keeps its items not started pending
and its status (its step says why): the worker remembers it and claims other jobs instead,
until the job leaves the active statuses or its budget changes. A worker that starts anew
sums the job's stored spend once, finds the budget reached, and remembers it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from .. import _clock
from ..errors import ConfigError
from ..policy._checks import is_positive
from .errors import StoreUnavailable
from .jobrun import JobRun
from .model import ACTIVE
from .observe import Observers
from .outage import Outage
from .tracing import default_observers

if TYPE_CHECKING:
    from collections.abc import Awaitable, Sequence

    from .app import App
    from .model import Claim
    from .observe import JobObserver
    from .store import Store

__all__ = ["Worker", "WorkerOptions", "new_worker_id"]

logger = logging.getLogger("conveyor.jobs")
T = TypeVar("T")

#: After a stop's grace period, how long the last store calls (results, giving items back)
#: may still take, seconds.
LAST_CALL_S = 2.0


def _positive(name: str, value: object, hint: str) -> None:
    if not is_positive(value):
        msg = f"{name}={value!r}: {name} must be a number > 0; {hint}"
        raise ConfigError(msg)


@dataclass(frozen=True, kw_only=True, slots=True)
class WorkerOptions:
    """How a worker claims, checkpoints and stops. Validated here (`ConfigError`).

    Args:
        lease_s: how long a claim holds without renewal; a dead worker's items are re-queued
            this long after its last renewal (renewed every ``lease_s / 3``).
        claim_size: items claimed per store call; ``None`` (the default): about the job's
            concurrency plus a small prefetch, so a worker holds only what it runs and other
            workers share a job (a benchmark of no-op items may pass a large size).
        batch_size: results written per transaction, at most.
        flush_interval_s: results are written at least this often (also the heartbeat).
        poll_interval_s: how long an idle worker waits before looking for work again.
        grace_s: after `Worker.stop`, how long in-flight items may still finish.
    """

    lease_s: float = 30.0
    claim_size: int | None = None
    batch_size: int = 1000
    flush_interval_s: float = 0.2
    poll_interval_s: float = 1.0
    grace_s: float = 30.0

    def __post_init__(self) -> None:
        _positive("lease_s", self.lease_s, "e.g. lease_s=30")
        _positive("flush_interval_s", self.flush_interval_s, "e.g. flush_interval_s=0.2")
        _positive("poll_interval_s", self.poll_interval_s, "e.g. poll_interval_s=1")
        _positive("grace_s", self.grace_s, "e.g. grace_s=30")
        for name in ("claim_size", "batch_size"):
            value = getattr(self, name)
            if name == "claim_size" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                msg = f"{name}={value!r}: {name} must be a whole number >= 1"
                raise ConfigError(msg)
        if self.flush_interval_s >= self.lease_s / 3:
            msg = (
                f"flush_interval_s={self.flush_interval_s} must be below lease_s / 3"
                f" ({self.lease_s / 3:g}): the lease is renewed on the heartbeat"
            )
            raise ConfigError(msg)


def new_worker_id() -> str:
    """``host-pid-random``: unique per process, and says where the worker runs."""
    return f"{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}"


class Worker:
    """Runs jobs from `store` with the tasks and limiters of `app`.

    When `run` returns, the worker closes `app` (its HTTP connections, its cache), unless
    ``close_app=False``: then whoever made the app closes it (the service, whose supervisor
    may start another worker on the same app).

    `observers` see its work (`conveyor.jobs.observe`: metrics, traces); ``None`` (the
    default): OpenTelemetry spans when ``opentelemetry-api`` is installed, else none.

    >>> worker = Worker(SqliteStore("jobs.db"), app)  # doctest: +SKIP
    >>> await worker.run(until_idle=True)  # doctest: +SKIP
    """

    def __init__(
        self,
        store: Store,
        app: App,
        *,
        options: WorkerOptions | None = None,
        worker_id: str | None = None,
        close_app: bool = True,
        observers: Sequence[JobObserver] | None = None,
    ) -> None:
        self.store = store
        self.app = app
        self._close_app = close_app
        self.options = options or WorkerOptions()
        self.id = worker_id or new_worker_id()
        self.stopping = False
        #: Set by `stop()`: a claim waiting on a silent store gives up at once.
        self.stopped = asyncio.Event()
        self._stop_seen_at: float | None = None
        self._claimed = False  # whether it ever held items (then it gives them back at the end)
        self._unsure = False  # a claim failed: it may hold items it does not know of
        self._wake = asyncio.Event()
        self._listening = False
        #: Items this worker settled and recorded, all jobs together.
        self.settled = 0
        #: Jobs whose spend budget is reached: id -> the budget then. Not claimed again.
        self.over_budget: dict[str, float | None] = {}
        #: The store's outages as this worker sees them (retries, log lines, `back_at`).
        self.outage = Outage(self.id)
        #: Who sees its work (each call guarded: a failing observer is only logged).
        self.observers = Observers(default_observers() if observers is None else observers)

    def wake(self) -> None:
        """Look for work now instead of at the end of ``poll_interval_s`` (after a submit)."""
        self._wake.set()

    def stop(self) -> None:
        """Stop gracefully: claim nothing new, finish in flight within ``grace_s``, release."""
        self.stopping = True
        self._wake.set()
        self.stopped.set()
        with contextlib.suppress(RuntimeError):  # the grace period runs from now
            self._stop_seen_at = self._stop_seen_at or _clock.now()

    def past_grace(self) -> bool:
        """Whether `stop()` was seen ``grace_s`` or more ago (False until it is called)."""
        if not self.stopping:
            return False
        now = _clock.now()
        if self._stop_seen_at is None:
            self._stop_seen_at = now
        return now - self._stop_seen_at >= self.options.grace_s

    def stop_budget_s(self) -> float | None:
        """How long a store call may still take: None (no bound) unless stopping.

        Stopping: what is left of the grace period, at least `LAST_CALL_S` (a silent store
        must not hold the stop).
        """
        if not self.stopping:
            return None
        self.past_grace()  # dates the stop if not yet
        assert self._stop_seen_at is not None
        left = self._stop_seen_at + self.options.grace_s - _clock.now()
        if left <= 0 and self.outage.down:
            return 0.0  # past the grace, and the store known down: not waited for at all
        return max(LAST_CALL_S, left)

    def may_requeue(self, now: float) -> bool:
        """Whether this worker may re-queue the items of lapsed leases now.

        Not within a lease of the store coming back from an outage: the other workers'
        leases lapsed because they could not renew them either (`conveyor.jobs.outage`).
        """
        return not self.outage.down and now - self.outage.back_at >= self.options.lease_s

    async def run(self, *, until_idle: bool = False) -> None:
        """Work until `stop()`; with `until_idle`, also return once no job is active.

        A store outage, however long, is waited out (see the module docstring).
        """
        o = self.options
        last_requeue = -math.inf
        try:
            while not self.stopping:
                # Cleared before looking: a wake() while this pass looks is not lost.
                self._wake.clear()
                try:
                    looked, found = await self.unless_stopped(self._look(last_requeue))
                    if found is None:
                        assert not looked
                        break  # stopped while a silent store kept it waiting
                    claim, last_requeue = found
                    self.outage.succeeded()
                    if claim is not None:
                        self._claimed = True
                        await self._run_job(claim)
                        continue
                    if until_idle and not await self._any_active():
                        return
                    wait_s = o.poll_interval_s
                except StoreUnavailable as exc:
                    wait_s = self.outage.failed(exc, "looking for work")
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait_s):
                        await self._wake.wait()
        finally:
            # Whatever is still ours goes back, and the lease with it.
            await asyncio.shield(self._release_all())
            if self._close_app:
                await self.app.aclose()

    async def unless_stopped(self, aw: Awaitable[T]) -> tuple[bool, T | None]:
        """``(True, await aw)``, or ``(False, None)`` if `stop()` came first (`aw` cancelled).

        A stop does not wait for a store call that a silent network holds (up to the store's
        own timeout, then its retries). Whatever a cancelled claim may have taken goes back
        when the lease lapses.
        """
        task = asyncio.ensure_future(aw)
        stopped = asyncio.ensure_future(self.stopped.wait())
        try:
            await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        if task.done():
            return True, task.result()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return False, None

    async def _look(self, last_requeue: float) -> tuple[Claim | None, float]:
        """One look for work: listen, give back unsure claims, re-queue when due, claim.

        Returns the claim (or None) with the time of the last re-queue.
        """
        o = self.options
        await self._listen()
        if self._unsure:
            # Between jobs this worker holds nothing it knows of: whatever a claim that
            # failed took (committed, its answer lost) goes back.
            await self.store.release(self.id)
            self._unsure = False
        now = _clock.now()
        if now - last_requeue >= o.lease_s / 3 and self.may_requeue(now):
            last_requeue = now
            await self.store.requeue_expired()
        # Only jobs whose task this worker has: the others wait for a worker that has theirs
        # (a service with --no-worker and workers with different apps). Unsized, one item
        # first: the job's run then claims by its concurrency.
        return await self._claim(), last_requeue

    async def _listen(self) -> None:
        """Listen for work on a store that notifies (once; again after a failed first try)."""
        listen = getattr(self.store, "listen", None)
        if listen is not None and not self._listening:
            # A store that notifies (PostgreSQL) wakes this worker when work arrives: the
            # poll interval is then only a fallback, not how work is found.
            await listen("work", lambda _job_id: self._wake.set())
            self._listening = True

    async def _release_all(self) -> None:
        """Give back every item still ours, and the lease; within ``grace_s`` in an outage.

        If the store stays unreachable that long, the items go back when the lease lapses. A
        worker that never held any does not wait for an unreachable store at all.
        """
        try:
            async with asyncio.timeout(self.stop_budget_s()):
                await self.outage.call(
                    lambda: self.store.release(self.id),
                    doing="giving back its items",
                    give_up=lambda: not self._claimed or self.past_grace(),
                )
        except (StoreUnavailable, TimeoutError):
            if not self._claimed:
                return
            logger.warning(
                "conveyor worker %s: stopped without dropping its lease (the store is"
                " unavailable); items it held go back to pending when the lease lapses"
                " (lease_s=%g)",
                self.id,
                self.options.lease_s,
            )

    async def claim(self, *, limit: int, job_id: str | None = None) -> Claim | None:
        """`Store.claim` for this worker, of its tasks, under its lease.

        A claim that raised `StoreUnavailable` may have committed with its answer lost: the
        items it took are then this worker's without its knowing, and its heartbeat would
        keep them running for as long as it works. They go back before its next job (`run`).
        """
        o = self.options
        try:
            claim = await self.store.claim(
                self.id, limit=limit, lease_s=o.lease_s, job_id=job_id, tasks=self.app.task_names
            )
        except (StoreUnavailable, asyncio.CancelledError):
            self._unsure = True  # it may have committed, its answer lost
            raise
        if claim is not None:
            self.observers.claimed(self.id, claim)
        return claim

    async def _claim(self) -> Claim | None:
        """Claim items of the oldest active job of this worker's tasks, not over budget."""
        size = self.options.claim_size or 1
        if self.over_budget:
            for job_id in list(self.over_budget):
                job = await self.store.get_job(job_id)
                if job is None or job.status not in ACTIVE:
                    del self.over_budget[job_id]
                elif job.options.max_cost_usd != self.over_budget[job_id]:
                    del self.over_budget[job_id]  # a new budget: try again
        if not self.over_budget:
            return await self.claim(limit=size)
        # Rare: the store claims the oldest job, which may be one over budget; so the jobs
        # are listed and claimed by id instead, oldest first.
        for job_id in await self._claimable():
            claim = await self.claim(limit=size, job_id=job_id)
            if claim is not None:
                return claim
        return None

    async def _claimable(self, page: int = 500) -> list[str]:
        """The ids of the active jobs of this worker's tasks with items pending, not over budget."""
        found: set[str] = set()
        for status in ACTIVE:
            for task in self.app.task_names:
                before = None
                while True:
                    jobs = await self.store.list_jobs(
                        status=status,  # type: ignore[arg-type]
                        task=task,
                        limit=page,
                        before=before,
                    )
                    found.update(
                        j.id for j in jobs if j.counts.pending and j.id not in self.over_budget
                    )
                    if len(jobs) < page:
                        break
                    before = jobs[-1].id
        return sorted(found)

    async def _any_active(self) -> bool:
        """Whether a job this worker could run (one of its tasks) is still active."""
        for status in ("queued", "running", "cancelling"):
            for task in self.app.task_names:
                jobs = await self.store.list_jobs(
                    status=status, task=task, limit=len(self.over_budget) + 1
                )
                if any(j.id not in self.over_budget for j in jobs):
                    return True
        return False

    async def _run_job(self, claim: Claim) -> None:
        job = claim.job
        task = self.app.get_task(job.task)
        if task is None:
            known = ", ".join(self.app.task_names) or "none"
            await self.store.fail_job(
                job.id,
                f"unknown task {job.task!r}: no worker task has this name (this worker's app"
                f" has: {known}); register it with @app.task({job.task!r})",
            )
            return
        try:
            limiters = self.app.resolve_limiters((*task.limiters, *job.options.limiters))
        except ConfigError as exc:
            await self.store.fail_job(job.id, str(exc))
            return
        budget = job.options.max_cost_usd
        if budget is not None and (task.bound_usd is None or task.spent_usd is None):
            await self.store.fail_job(
                job.id,
                f"max_cost_usd={budget:g}: a spend budget applies only to the http tasks of the"
                f" connections (LLM jobs), and task {job.task!r} is not one; submit it without",
            )
            return
        run = JobRun(self, claim, task, limiters)
        try:
            with self.observers.running(self.id, job):
                await run.run()
        finally:
            self.settled += run.settled
        if run.halted is not None:
            self.over_budget[job.id] = budget
