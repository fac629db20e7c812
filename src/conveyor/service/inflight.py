"""`InFlight`: the calls the service's own worker is making now, per job.

A job's ``running`` count is its claimed items: a worker claims ahead of what it can run (a
job at concurrency 20 may hold 65), so "running" overstates what is in flight. This observer
of the in-process worker counts the attempts between their start and their end, per job, so
the dashboard can say how many calls are in flight. Items run by other processes (separate
``conveyor worker``s) are not seen here: for them only the claimed count is known.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from ..jobs.observe import JobObserver

if TYPE_CHECKING:
    import contextlib
    from collections.abc import Callable

    from ..jobs.model import ClaimedItem, Job

__all__ = ["InFlight"]


def _ignore(value: Any) -> None:
    del value


class InFlight(JobObserver):
    """Attempts in progress in this process's worker, per job id."""

    def __init__(self) -> None:
        self._now: Counter[str] = Counter()

    def of(self, job_id: str) -> int:
        """The attempts at `job_id`'s items in progress now."""
        return self._now.get(job_id, 0)

    def attempt(
        self, job: Job, item: ClaimedItem, item_input: Any
    ) -> contextlib.AbstractContextManager[Callable[[Any], None]] | None:
        """Counts the attempt while it runs."""
        del item, item_input
        return _Attempt(self._now, job.id)


class _Attempt:
    """One attempt counted in flight from its start to its end (per attempt: a small class)."""

    __slots__ = ("_job_id", "_now")

    def __init__(self, now: Counter[str], job_id: str) -> None:
        self._now = now
        self._job_id = job_id

    def __enter__(self) -> Callable[[Any], None]:
        self._now[self._job_id] += 1
        return _ignore

    def __exit__(self, *exc: object) -> None:
        left = self._now[self._job_id] - 1
        if left > 0:
            self._now[self._job_id] = left
        else:
            del self._now[self._job_id]
