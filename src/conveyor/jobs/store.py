"""The one interface every job store implements, and nothing else talks to storage.

Stores: `MemoryStore` (the in-memory twin, for tests and one process), `SqliteStore` (the
default: one file) and `PostgresStore` (many workers and service instances). All three pass
the same contract suite (``tests/jobs/test_store_*.py``): they are one job store
(`conveyor.jobs.stores.manager.JobStore`, the rules in `conveyor.jobs.stores.rules`) over a
connector per backend (`conveyor.jobs.stores.connector`).

What every store guarantees:

- **Atomic writes.** Each call is one transaction: a job is created with all its items or not
  at all; a claim, a batch of results, a cancel each land whole. A job's counts always add up
  to its total.
- **Claims under a lease.** `claim` moves pending items to ``running`` for one worker, whose
  lease (one per worker, covering all its items) lasts `lease_s` unless `renew`-ed. Two
  claims never get the same item. `requeue_expired` puts the items of workers whose lease ran
  out back to ``pending`` (or ``cancelled``, if their job is being cancelled).
- **Fenced results.** `record` and `release` only touch items still ``running`` under that
  worker: a worker that lost its lease cannot overwrite what another worker did since.
- **Versions.** Every change to a job (counts, status, progress) raises its `version`, in
  the same transaction: a reader that saw version v knows nothing changed while it reads v.
- **Admission.** `create_job` checks an idempotency key and the tenant's active-jobs limit
  in the transaction that inserts the job (and `retry_failed` the limit, in the one that
  reopens an ended job), so concurrent calls behave as if made one after the other: one
  job per (tenant, key), never more active jobs than the limit.
- **Settling the job.** Whenever a call leaves a job with nothing pending or running, the job
  ends in the same transaction, by the settle rule (`conveyor.jobs.settle`): ``cancelled`` when
  it was ``cancelling``, ``failed`` when no item succeeded, else ``completed``.

Times are Unix seconds from the store's ``clock`` (by default `conveyor._clock.wall`, which
follows `conveyor.testing.VirtualClock`), read once per call.

Beside the jobs, in the same database, every store keeps uploaded files and the records of
batches: `FileStore`, its ``files`` (`conveyor.jobs.stores.file_manager.FileManager`), so
that any number of service instances sharing a store serve every file and batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, TypedDict, Unpack

from .stores.file_manager import FileManager

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable, Sequence

    from .file_model import FileItems
    from .model import Claim, ItemResult, ItemState, Job, JobItem, JobStatus, NewJob

__all__ = ["FileStore", "JobFilters", "Store"]


class JobFilters(TypedDict, total=False):
    """Which jobs `Store.list_jobs` (and `conveyor.jobs.Jobs.list`) return; each is optional.

    Keys:
        status, tenant, task: only the jobs of this status, tenant, task (``None``: any).
        limit: at most this many jobs (default 50).
        before: a job id: only older jobs are returned (the cursor of the next page is the
            last id of this one).
    """

    status: JobStatus | None
    limit: int
    tenant: str | None
    task: str | None
    before: str | None


class Store(Protocol):
    """The storage of jobs and their items (see the module docstring for the guarantees)."""

    async def create_job(
        self,
        job: NewJob,
        items: Iterable[str] | FileItems,
        *,
        max_active_jobs: int | None = None,
    ) -> Job:
        """Create `job` with `items` (JSON text each, in order) in one transaction.

        `items` is consumed lazily; if it raises, or is empty (`InvalidJob`), nothing is
        written and the error propagates. `FileItems` are the lines of a stored file, read in
        the same transaction (`InvalidJob` if the tenant has no such file).

        If `job` has an idempotency key and its tenant already has a job with that key, that
        job is returned and `items` is not read (the caller tells the two apart by the
        returned id); creates racing with the same key all return the one job.

        With `max_active_jobs`, a new job is refused (`TooManyActiveJobs`, nothing written)
        when its tenant already has that many active jobs (queued, running or cancelling),
        counted in the transaction that creates it: creates racing each other, from any
        number of processes, never pass the limit. A replay of an idempotency key creates
        nothing and is never refused.
        """
        ...

    async def get_job(self, job_id: str) -> Job | None:
        """Return the job, or ``None``. Never waits behind a worker's writes."""
        ...

    async def list_jobs(self, **filters: Unpack[JobFilters]) -> list[Job]:
        """Return up to ``limit`` jobs, newest first, filtered as `JobFilters` says."""
        ...

    async def claim(
        self,
        worker_id: str,
        *,
        limit: int,
        lease_s: float,
        job_id: str | None = None,
        tasks: Collection[str] | None = None,
    ) -> Claim | None:
        """Claim up to `limit` pending items of one active job (`job_id`'s, or the oldest).

        With `tasks`, only a job whose task is one of them (a worker claims only what it can
        run; other jobs wait for a worker that has their task). The items become ``running``
        for `worker_id`, whose lease is (re)set to `lease_s` from now; a queued job becomes
        running. ``None`` when there is nothing to claim.

        A job with a spend budget (``max_cost_usd``) runs on one worker at a time: while
        another worker has items of it running, it is passed over (the oldest other job is
        claimed instead; with `job_id`, ``None``). Its spend is then counted by one worker,
        so the budget is kept exactly however many workers there are; when that worker stops
        or dies (its lease lapses and its items go back), another takes the job over.
        """
        ...

    async def started(self, worker_id: str, items: Sequence[tuple[str, int]]) -> int:
        """Count one attempt for each of the worker's running `items`: they started.

        `items` are (job id, index) pairs; items not running under `worker_id` are ignored.
        Returns how many were counted. An attempt counts when it starts (the worker reports
        in-flight items in batches), so a claimed item that never started counts none when
        its worker dies; `record` adds only the attempts not reported here.
        """
        ...

    async def renew(self, worker_id: str, *, lease_s: float) -> bool:
        """Extend the worker's lease to `lease_s` from now; return whether it was still held.

        False means it had lapsed and its items were re-queued: the worker must drop them.
        """
        ...

    async def record(self, worker_id: str, results: Sequence[ItemResult]) -> int:
        """Settle a batch of the worker's running items in one transaction.

        Results for items not running under `worker_id` are ignored. Returns how many were
        recorded.
        """
        ...

    async def release(self, worker_id: str, items: Sequence[tuple[str, int]] | None = None) -> int:
        """Put the worker's running `items` back to pending; return how many moved.

        `items` are (job id, index) pairs; ``None`` means all of them, and also drops the
        worker's lease. In a job being cancelled they become cancelled instead.
        """
        ...

    async def requeue_expired(self) -> int:
        """Release the items of every worker whose lease has run out; return how many."""
        ...

    async def request_cancel(self, job_id: str) -> Job:
        """Cancel the job; return it.

        Pending items become cancelled at once; with items running, the job is ``cancelling``
        until their workers settle them. A done job is left as is.

        Raises `JobNotFound`.
        """
        ...

    async def retry_failed(self, job_id: str, *, max_active_jobs: int | None = None) -> int:
        """Put the job's failed items back to pending (the job back to queued); return how many.

        A completed job, or one failed by its items, so reopened becomes active again: with
        `max_active_jobs`, that is refused (`TooManyActiveJobs`, nothing changed) when its
        tenant already has that many other active jobs, counted in the same transaction as the
        retry, as `create_job` counts them. The retry of a job still active reopens nothing
        and is never refused.

        Raises `JobNotFound`, or `JobStateError` if the job was cancelled or could not run.
        """
        ...

    async def set_budget(self, job_id: str, max_cost_usd: float | None) -> Job:
        """Set the job's spend budget (``options.max_cost_usd``; None: none); return the job.

        Nothing else of the job changes (its version rises). A worker that stopped claiming
        the job at its old budget sees the new one and claims its pending items again.

        Raises `JobNotFound`, `ConfigError` for a budget not > 0, or `JobStateError` if the
        job was cancelled, is being cancelled, or failed.
        """
        ...

    async def fail_job(self, job_id: str, error: str) -> Job:
        """Mark the job failed with `error`; its unsettled items become cancelled."""
        ...

    async def set_progress(self, job_id: str, *, inflight: float, step: str | None) -> None:
        """Publish the in-flight items' reported progress (in items) and the latest step.

        `step` None keeps the job's step as it is; ``""`` clears it. A done job is left as is.
        """
        ...

    async def items(
        self,
        job_id: str,
        *,
        state: ItemState | None = None,
        after: int = -1,
        limit: int = 1000,
    ) -> list[JobItem]:
        """Return up to `limit` items with index > `after`, in index order, of one state or all."""
        ...

    async def close(self) -> None:
        """Release the store's resources (connections, threads)."""
        ...


#: Uploaded files and batch records, in a store's database: every store's ``files``. One
#: class serves every backend, so the interface is that class (see its guarantees).
FileStore = FileManager
