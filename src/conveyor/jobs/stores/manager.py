"""`JobStore`: the one job store, over a backend's `Connector`.

Every `conveyor.jobs.store.Store` call is here once: it reads the time once, answers what
needs no database (nothing to record), and runs the call's rule (`JobRules`) through the
connector, in one transaction. `MemoryStore`, `SqliteStore` and `PostgresStore` are this class
with their connector; they add only what is theirs (a file's path, ``LISTEN``, migrations).
Its ``files`` (`FileManager`, a `conveyor.jobs.store.FileStore`) keeps uploaded files and
batch records on the same connector.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..model import TERMINAL, UNFINISHED
from ..overview import StoreOverview, WorkerLease
from .file_manager import FileManager
from .rules import JobRules

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable, Sequence

    from ..file_model import FileItems
    from ..model import Claim, ItemResult, ItemState, Job, JobItem, JobStatus, NewJob
    from .connector import Connector

__all__ = ["JobStore"]


class JobStore:
    """A `Store` over `connector` (see `conveyor.jobs.store.Store` for each call)."""

    def __init__(self, connector: Connector) -> None:
        self._connector = connector
        #: The rules every call runs (one object a store: tests may replace a rule in it).
        self._rules = JobRules()
        #: Uploaded files and batch records, in the same database (`FileStore`).
        self.files = FileManager(connector, self._rules)

    async def create_job(
        self,
        job: NewJob,
        items: Iterable[str] | FileItems,
        *,
        max_active_jobs: int | None = None,
    ) -> Job:
        """Create the job with all its items in one transaction (the limit checked in it)."""
        now = self._connector.now()
        return await self._connector.transaction(
            lambda c: self._rules.create_job(c, job, items, now, max_active_jobs)
        )

    async def get_job(self, job_id: str) -> Job | None:
        """Return the job, or None."""
        return await self._connector.read(lambda c: self._rules.get_job(c, job_id))

    async def list_jobs(
        self,
        *,
        status: JobStatus | None = None,
        limit: int = 50,
        tenant: str | None = None,
        task: str | None = None,
        before: str | None = None,
    ) -> list[Job]:
        """Newest first, filtered, after the cursor `before`."""
        filters = {"status": status, "limit": limit, "tenant": tenant, "task": task}
        filters["before"] = before
        return await self._connector.read(lambda c: self._rules.list_jobs(c, **filters))

    async def claim(
        self,
        worker_id: str,
        *,
        limit: int,
        lease_s: float,
        job_id: str | None = None,
        tasks: Collection[str] | None = None,
    ) -> Claim | None:
        """Claim pending items of one active job (of one of `tasks`, if given)."""
        now = self._connector.now()
        names = None if tasks is None else sorted(tasks)
        return await self._connector.transaction(
            lambda c: self._rules.claim(c, worker_id, limit, lease_s, job_id, names, now)
        )

    async def started(self, worker_id: str, items: Sequence[tuple[str, int]]) -> int:
        """Count an attempt for each of the worker's running `items`."""
        if not items:
            return 0
        return await self._connector.transaction(lambda c: self._rules.started(c, worker_id, items))

    async def renew(self, worker_id: str, *, lease_s: float) -> bool:
        """Extend the lease if still held."""
        now = self._connector.now()
        return await self._connector.transaction(
            lambda c: self._rules.renew(c, worker_id, lease_s, now)
        )

    async def record(self, worker_id: str, results: Sequence[ItemResult]) -> int:
        """Settle a batch in one transaction."""
        if not results:
            return 0
        now = self._connector.now()
        return await self._connector.transaction(
            lambda c: self._rules.record(c, worker_id, results, now)
        )

    async def release(self, worker_id: str, items: Sequence[tuple[str, int]] | None = None) -> int:
        """Put running items back (all of them, and the lease, with ``items=None``)."""
        now = self._connector.now()
        return await self._connector.transaction(
            lambda c: self._rules.release(c, worker_id, items, now)
        )

    async def requeue_expired(self) -> int:
        """Release the items of every lapsed lease."""
        now = self._connector.now()
        return await self._connector.transaction(lambda c: self._rules.requeue_expired(c, now))

    async def request_cancel(self, job_id: str) -> Job:
        """Cancel the job: pending items at once, running ones by their workers."""
        now = self._connector.now()
        return await self._connector.transaction(
            lambda c: self._rules.request_cancel(c, job_id, now)
        )

    async def retry_failed(self, job_id: str, *, max_active_jobs: int | None = None) -> int:
        """Failed items back to pending (a completed job reopened within the limit)."""
        now = self._connector.now()
        return await self._connector.transaction(
            lambda c: self._rules.retry_failed(c, job_id, now, max_active_jobs)
        )

    async def set_budget(self, job_id: str, max_cost_usd: float | None) -> Job:
        """Set the job's spend budget."""
        return await self._connector.transaction(
            lambda c: self._rules.set_budget(c, job_id, max_cost_usd)
        )

    async def fail_job(self, job_id: str, error: str) -> Job:
        """The job could not run: failed, its unsettled items cancelled."""
        now = self._connector.now()
        return await self._connector.transaction(
            lambda c: self._rules.fail_job(c, job_id, error, now)
        )

    async def set_progress(self, job_id: str, *, inflight: float, step: str | None) -> None:
        """Publish in-flight progress and the step."""
        await self._connector.transaction(
            lambda c: self._rules.set_progress(c, job_id, inflight, step)
        )

    async def items(
        self,
        job_id: str,
        *,
        state: ItemState | None = None,
        after: int = -1,
        limit: int = 1000,
    ) -> list[JobItem]:
        """A page of items in index order."""
        return await self._connector.read(
            lambda c: self._rules.items(c, job_id, state, after, limit)
        )

    async def rate_counts(self, job_id: str) -> list[tuple[int, int]]:
        """``(second, items settled)`` of the job, oldest first (`conveyor.jobs.series`)."""
        rows = await self._connector.read(lambda c: c.fetch("rate_series", job=job_id))
        return [(int(second), int(n)) for second, n in rows]

    async def overview(self) -> StoreOverview:
        """The jobs by status and the queue's depth, in one query (`conveyor.jobs.overview`)."""
        rows = await self._connector.read(lambda c: c.fetch("jobs_overview"))
        jobs = dict.fromkeys((*UNFINISHED, *TERMINAL), 0)
        pending = running = 0
        oldest: float | None = None
        for status, n, status_pending, status_running, queued_at in rows:
            jobs[str(status)] = int(n)
            if status in UNFINISHED:
                pending += int(status_pending)
                running += int(status_running)
            if queued_at is not None:
                oldest = float(queued_at)
        return StoreOverview(jobs=jobs, pending=pending, running=running, oldest_queued_at=oldest)

    async def worker_leases(self) -> list[WorkerLease]:
        """The workers holding a lease now (expired ones too, until they are swept), by id."""
        rows = await self._connector.read(lambda c: c.fetch("worker_leases"))
        running: dict[str, dict[str, int]] = {}
        until: dict[str, float] = {}
        for worker_id, lease_until, job_id, n in rows:
            until[worker_id] = float(lease_until)
            jobs = running.setdefault(worker_id, {})
            if job_id is not None:
                jobs[job_id] = int(n)
        return [WorkerLease(worker_id=w, lease_until=until[w], running=running[w]) for w in until]

    async def close(self) -> None:
        """Release the connector's resources."""
        await self._connector.close()
