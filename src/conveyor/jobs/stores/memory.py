"""`MemoryStore`: the store in a process's memory, the twin the contract suite holds to SQLite.

For tests, and for jobs that need not survive the process. Every call runs without awaiting,
so on one event loop each is atomic, as a transaction would be.
"""

from __future__ import annotations

import heapq
import json
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from ... import _clock
from .. import latency as hist
from ..errors import InvalidJob, JobNotFound, JobStateError
from ..model import (
    ACTIVE,
    TERMINAL,
    UNFINISHED,
    Claim,
    ClaimedItem,
    Counts,
    Job,
    JobItem,
    admit,
    budget_options,
    reopens,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterable, Sequence

    from ..model import ItemResult, ItemState, JobStatus, NewJob

__all__ = ["MemoryStore"]


@dataclass(slots=True)
class _Item:
    input_json: str
    state: ItemState = "pending"
    attempts: int = 0
    worker: str | None = None
    result_json: str | None = None
    error_type: str | None = None
    error_message: str | None = None
    latency_s: float | None = None
    started_at: float | None = None
    finished_at: float | None = None


@dataclass(slots=True)
class _Job:
    job: Job
    items: list[_Item]
    pending: list[int] = field(default_factory=list)  # a heap of indexes, stale ones skipped
    holders: dict[str, int] = field(default_factory=dict)  # worker -> its running items

    def hold(self, worker: str, n: int) -> None:
        left = self.holders.get(worker, 0) + n
        if left > 0:
            self.holders[worker] = left
        else:
            self.holders.pop(worker, None)

    def held_by_another(self, worker: str) -> bool:
        """A budgeted job runs on one worker at a time (see `Store.claim`)."""
        return self.job.options.max_cost_usd is not None and any(w != worker for w in self.holders)


class MemoryStore:
    """A `Store` in memory. `clock` returns Unix seconds (default: `conveyor._clock.wall`)."""

    def __init__(self, *, clock: Callable[[], float] = _clock.wall) -> None:
        self._clock = clock
        self._jobs: dict[str, _Job] = {}
        self._leases: dict[str, float] = {}
        self._keys: dict[tuple[str, str], str] = {}  # (tenant, idempotency key) -> job id

    # -- helpers ---------------------------------------------------------------------------

    def _get(self, job_id: str) -> _Job:
        row = self._jobs.get(job_id)
        if row is None:
            raise JobNotFound(job_id)
        return row

    def _count(self, row: _Job, **deltas: int) -> None:
        c = row.job.counts
        self._set(row, counts=replace(c, **{k: getattr(c, k) + v for k, v in deltas.items()}))

    def _set(self, row: _Job, **changes: object) -> None:
        # Every change bumps the version, as SQLite's trigger does.
        version = row.job.version + 1
        row.job = replace(row.job, **changes, version=version)  # type: ignore[arg-type]

    def _settle_job(self, row: _Job, now: float) -> None:
        c = row.job.counts
        if c.pending or c.running or row.job.status not in {"running", "cancelling", "queued"}:
            return
        status: JobStatus = "cancelled" if row.job.status == "cancelling" else "completed"
        self._set(row, status=status, finished_at=now, inflight=0.0)

    def _unfinished(self, tenant: str) -> int:
        """The tenant's active jobs, for its limit."""
        return sum(
            1 for r in self._jobs.values() if r.job.tenant == tenant and r.job.status in UNFINISHED
        )

    def _unrun(self, row: _Job, index: int, now: float) -> None:
        """A running item goes back to pending, or to cancelled in a cancelling job."""
        item = row.items[index]
        if item.worker is not None:
            row.hold(item.worker, -1)
        item.worker = None
        if row.job.status == "cancelling":
            item.state = "cancelled"
            item.finished_at = now
            self._count(row, running=-1, cancelled=1)
        else:
            item.state = "pending"
            heapq.heappush(row.pending, index)
            self._count(row, running=-1, pending=1)

    # -- the Store interface ---------------------------------------------------------------

    async def create_job(
        self, job: NewJob, items: Iterable[str], *, max_active_jobs: int | None = None
    ) -> Job:
        """Create the job with its items, all or nothing; once per key; within the limit."""
        key = job.idempotency_key
        if key is not None and (job.tenant, key) in self._keys:
            return self._jobs[self._keys[job.tenant, key]].job
        if max_active_jobs is not None:
            admit(job.tenant, self._unfinished(job.tenant), max_active_jobs)
        rows = [_Item(text) for text in items]  # may raise: then nothing was stored
        if not rows:
            msg = "the job has no items: pass at least one item"
            raise InvalidJob(msg)
        n = len(rows)
        snapshot = Job(
            id=job.id,
            task=job.task,
            options=job.options,
            status="queued",
            counts=Counts(total=n, pending=n),
            created_at=job.created_at,
            tenant=job.tenant,
            idempotency_key=key,
            request_hash=job.request_hash,
        )
        self._jobs[job.id] = _Job(snapshot, rows, list(range(n)))
        if key is not None:
            self._keys[job.tenant, key] = job.id
        return snapshot

    async def get_job(self, job_id: str) -> Job | None:
        """Return the job, or None."""
        row = self._jobs.get(job_id)
        return None if row is None else row.job

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
        jobs = [
            j
            for j in (r.job for r in self._jobs.values())
            if (status is None or j.status == status)
            and (tenant is None or j.tenant == tenant)
            and (task is None or j.task == task)
            and (before is None or j.id < before)
        ]
        jobs.sort(key=lambda j: j.id, reverse=True)
        return jobs[:limit]

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
        now = self._clock()
        candidates = [self._jobs[job_id]] if job_id in self._jobs else []
        if job_id is None:
            candidates = sorted(self._jobs.values(), key=lambda r: r.job.id)
        for row in candidates:
            if row.job.status not in ACTIVE or row.job.counts.pending == 0:
                continue
            if tasks is not None and row.job.task not in tasks:
                continue
            if row.held_by_another(worker_id):
                continue
            claimed: list[ClaimedItem] = []
            while row.pending and len(claimed) < limit:
                index = heapq.heappop(row.pending)
                item = row.items[index]
                if item.state != "pending":
                    continue
                item.state = "running"
                item.worker = worker_id
                item.started_at = now
                claimed.append(ClaimedItem(row.job.id, index, item.input_json, item.attempts))
            if not claimed:
                continue
            self._count(row, pending=-len(claimed), running=len(claimed))
            row.hold(worker_id, len(claimed))
            if row.job.status == "queued":
                self._set(row, status="running", started_at=row.job.started_at or now)
            self._leases[worker_id] = now + lease_s
            return Claim(row.job, claimed)
        return None

    async def renew(self, worker_id: str, *, lease_s: float) -> bool:
        """Extend the lease, if it is still held."""
        if worker_id not in self._leases:
            return False
        self._leases[worker_id] = self._clock() + lease_s
        return True

    async def record(self, worker_id: str, results: Sequence[ItemResult]) -> int:
        """Settle the worker's items."""
        now = self._clock()
        recorded = 0
        touched: dict[str, _Job] = {}
        latencies: dict[str, list[float]] = {}
        for r in results:
            row = self._jobs.get(r.job_id)
            if row is None or not 0 <= r.index < len(row.items):
                continue
            item = row.items[r.index]
            if item.state != "running" or item.worker != worker_id:
                continue
            item.state = r.state
            item.worker = None
            row.hold(worker_id, -1)
            item.attempts += r.attempts
            item.result_json = r.result_json
            item.error_type = r.error_type
            item.error_message = r.error_message
            item.latency_s = r.latency_s
            item.finished_at = now
            deltas = {"running": -1, r.state: 1}
            self._count(row, **deltas)
            if r.latency_s is not None and r.state != "cancelled":
                self._set(row, latency_total_s=row.job.latency_total_s + r.latency_s)
                latencies.setdefault(r.job_id, []).append(r.latency_s)
            touched[r.job_id] = row
            recorded += 1
        for job_id, row in touched.items():
            merged = hist.merge(row.job.latency_hist, latencies.get(job_id, ()))
            self._set(row, latency_hist=merged)
            c = row.job.counts
            if row.job.status == "running" and c.running == 0 and c.pending:
                self._set(row, status="queued")  # no worker has it any more
            self._settle_job(row, now)
        return recorded

    async def release(self, worker_id: str, items: Sequence[tuple[str, int]] | None = None) -> int:
        """Put the worker's running items back."""
        now = self._clock()
        moved = 0
        touched: dict[str, _Job] = {}
        pairs = items
        if pairs is None:
            self._leases.pop(worker_id, None)
            pairs = [
                (job_id, i)
                for job_id, row in self._jobs.items()
                if row.job.counts.running
                for i, item in enumerate(row.items)
                if item.state == "running" and item.worker == worker_id
            ]
        for job_id, index in pairs:
            row = self._jobs.get(job_id)
            if row is None or not 0 <= index < len(row.items):
                continue
            item = row.items[index]
            if item.state != "running" or item.worker != worker_id:
                continue
            self._unrun(row, index, now)
            touched[job_id] = row
            moved += 1
        for row in touched.values():
            c = row.job.counts
            if row.job.status == "running" and c.running == 0 and c.pending:
                self._set(row, status="queued")  # no worker has it any more
            self._settle_job(row, now)
        return moved

    async def started(self, worker_id: str, items: Sequence[tuple[str, int]]) -> int:
        """Count an attempt for each of the worker's running `items` (they started)."""
        counted = 0
        for job_id, index in items:
            row = self._jobs.get(job_id)
            if row is None or not 0 <= index < len(row.items):
                continue
            item = row.items[index]
            if item.state == "running" and item.worker == worker_id:
                item.attempts += 1
                counted += 1
        return counted

    async def requeue_expired(self) -> int:
        """Release every item of workers whose lease ran out."""
        now = self._clock()
        expired = [w for w, until in self._leases.items() if until < now]
        moved = 0
        for worker_id in expired:
            # Attempts already count (`started`): items claimed but never started count none.
            moved += await self.release(worker_id)
        return moved

    async def request_cancel(self, job_id: str) -> Job:
        """Cancel pending items now; the job is cancelling while items run."""
        now = self._clock()
        row = self._get(job_id)
        if row.job.status in TERMINAL:
            return row.job
        cancelled = 0
        for item in row.items:
            if item.state == "pending":
                item.state = "cancelled"
                item.finished_at = now
                cancelled += 1
        row.pending.clear()
        self._count(row, pending=-cancelled, cancelled=cancelled)
        self._set(row, status="cancelling")
        self._settle_job(row, now)
        return row.job

    async def retry_failed(self, job_id: str, *, max_active_jobs: int | None = None) -> int:
        """Failed items back to pending (a completed job reopened within the limit)."""
        row = self._get(job_id)
        if row.job.status in {"cancelled", "cancelling", "failed"}:
            msg = (
                f"job {job_id} is {row.job.status}: only a queued, running or completed job"
                " can retry its failed items"
            )
            raise JobStateError(msg)
        if max_active_jobs is not None and reopens(row.job):
            admit(row.job.tenant, self._unfinished(row.job.tenant), max_active_jobs)
        again = 0
        latency = 0.0
        latencies: list[float] = []
        for index, item in enumerate(row.items):
            if item.state == "failed":
                latency += item.latency_s or 0.0
                if item.latency_s is not None:
                    latencies.append(item.latency_s)
                item.state = "pending"
                item.error_type = item.error_message = None
                item.latency_s = item.finished_at = None
                heapq.heappush(row.pending, index)
                again += 1
        if again:
            self._count(row, failed=-again, pending=again)
            left = hist.merge(row.job.latency_hist, latencies, sign=-1)
            self._set(row, latency_total_s=row.job.latency_total_s - latency, latency_hist=left)
            if row.job.status == "completed":
                # The start moves forward by the idle time: the duration counts running only.
                started = row.job.started_at
                if started is not None and row.job.finished_at is not None:
                    started += max(0.0, self._clock() - row.job.finished_at)
                self._set(row, status="queued", finished_at=None, started_at=started)
        return again

    async def set_budget(self, job_id: str, max_cost_usd: float | None) -> Job:
        """Set the job's spend budget."""
        row = self._get(job_id)
        self._set(row, options=budget_options(row.job, max_cost_usd))
        return row.job

    async def fail_job(self, job_id: str, error: str) -> Job:
        """The job could not run: settle what is left as cancelled."""
        now = self._clock()
        row = self._get(job_id)
        left = 0
        for item in row.items:
            if item.state in {"pending", "running"}:
                item.state = "cancelled"
                item.worker = None
                item.finished_at = now
                left += 1
        row.pending.clear()
        row.holders.clear()
        c = row.job.counts
        counts = replace(c, pending=0, running=0, cancelled=c.cancelled + left)
        self._set(row, status="failed", error=error, finished_at=now, counts=counts)
        return row.job

    async def set_progress(self, job_id: str, *, inflight: float, step: str | None) -> None:
        """Publish in-flight progress and the step message."""
        row = self._jobs.get(job_id)
        if row is not None and row.job.status not in TERMINAL:
            self._set(row, inflight=inflight, step=row.job.step if step is None else step or None)

    async def items(
        self,
        job_id: str,
        *,
        state: ItemState | None = None,
        after: int = -1,
        limit: int = 1000,
    ) -> list[JobItem]:
        """A page of items in index order."""
        row = self._get(job_id)
        out: list[JobItem] = []
        for index in range(max(0, after + 1), len(row.items)):
            item = row.items[index]
            if state is not None and item.state != state:
                continue
            out.append(_public(job_id, index, item))
            if len(out) >= limit:
                break
        return out

    async def close(self) -> None:
        """Nothing to release."""


def _public(job_id: str, index: int, item: _Item) -> JobItem:
    return JobItem(
        job_id=job_id,
        index=index,
        input=json.loads(item.input_json),
        state=item.state,
        attempts=item.attempts,
        result=None if item.result_json is None else json.loads(item.result_json),
        error_type=item.error_type,
        error_message=item.error_message,
        latency_s=item.latency_s,
        started_at=item.started_at,
        finished_at=item.finished_at,
    )
