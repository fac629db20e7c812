"""What a store holds right now, in a few numbers: jobs by status, the queue's depth.

For the gauges a metrics scrape reads (`conveyor.metrics`), at most once per scrape, so a
scrape's cost is bounded whatever the store holds:

- a store with an ``overview()`` method answers it in one query of its own (jobs counted by
  status, and the pending and running items of the unfinished ones);
- any other `Store` is read through its interface: the unfinished jobs (queued, running,
  cancelling), `CAP` of each status at most, newest first. The counts of finished jobs are
  then not known (``None``), and a status with more than `CAP` jobs says so (`capped`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from .model import UNFINISHED

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .store import Store

__all__ = ["CAP", "HasOverview", "HasViews", "StoreOverview", "WorkerLease", "read_overview"]

#: Jobs of each unfinished status read at most, for a store without ``overview()``.
CAP = 1000


@dataclass(frozen=True, kw_only=True, slots=True)
class StoreOverview:
    """A store's jobs and items right now.

    Attributes:
        jobs: status -> jobs in it (a status not named has none); only the unfinished
            statuses when `finished_known` is False.
        pending: items waiting for a worker, in queued and running jobs (the queue's depth).
        running: items claimed by a worker now.
        oldest_queued_at: when the oldest queued job was created (Unix seconds), or None.
        finished_known: whether `jobs` counts the finished statuses too.
        capped: the statuses of which `CAP` jobs were read, and more may exist.
    """

    jobs: Mapping[str, int]
    pending: int
    running: int
    oldest_queued_at: float | None = None
    finished_known: bool = True
    capped: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True, kw_only=True, slots=True)
class WorkerLease:
    """A worker as the store knows it: its lease, and the items it runs now.

    Attributes:
        worker_id: the worker's id.
        lease_until: when its lease lapses unless renewed (Unix seconds, the store's clock);
            past it, its items go back to other workers.
        running: job id -> the items of that job the worker holds now (claimed, running).
    """

    worker_id: str
    lease_until: float
    running: Mapping[str, int]


@runtime_checkable
class HasViews(Protocol):
    """A store that tells its jobs' rate series and its workers' leases (`JobStore`)."""

    async def rate_counts(self, job_id: str) -> list[tuple[int, int]]:
        """``(second, items settled)`` of the job, oldest first (`conveyor.jobs.series`)."""
        ...

    async def worker_leases(self) -> list[WorkerLease]:
        """The workers holding a lease now, by id."""
        ...


@runtime_checkable
class HasOverview(Protocol):
    """A store that answers `StoreOverview` itself, in one query."""

    async def overview(self) -> StoreOverview:
        """Jobs by status and the queue's depth, read in one query."""
        ...


async def read_overview(store: Store) -> StoreOverview:
    """The overview of `store`: its own, or read through the `Store` interface (bounded)."""
    if isinstance(store, HasOverview):
        return await store.overview()
    jobs: dict[str, int] = {}
    capped: set[str] = set()
    pending = running = 0
    oldest: float | None = None
    for status in sorted(UNFINISHED):
        found = await store.list_jobs(status=status, limit=CAP)  # type: ignore[arg-type]
        jobs[status] = len(found)
        if len(found) >= CAP:
            capped.add(status)
        for job in found:
            running += job.counts.running
            if status != "cancelling":  # a cancelled job's pending items never run
                pending += job.counts.pending
            if status == "queued" and (oldest is None or job.created_at < oldest):
                oldest = job.created_at
    return StoreOverview(
        jobs=jobs,
        pending=pending,
        running=running,
        oldest_queued_at=oldest,
        finished_known=False,
        capped=frozenset(capped),
    )
