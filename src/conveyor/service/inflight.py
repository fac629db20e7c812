"""`InFlight`: the calls the service's own worker is making now, per job.

A job's ``running`` count is its claimed items: a worker claims ahead of what it can run (a
job at concurrency 20 may hold 65), so "running" overstates what is in flight. This observer
of the in-process worker counts the attempts between their start and their end, per job, so
the dashboard can say how many calls are in flight. Items run by other processes (separate
``conveyor worker``s) are not seen here: for them only the claimed count is known.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from typing import TYPE_CHECKING, Any

from ..jobs.observe import JobObserver

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

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

    @contextlib.contextmanager
    def _one(self, job_id: str) -> Iterator[Callable[[Any], None]]:
        self._now[job_id] += 1
        try:
            yield _ignore
        finally:
            self._now[job_id] -= 1
            if self._now[job_id] <= 0:
                del self._now[job_id]

    def attempt(
        self, job: Job, item: ClaimedItem, item_input: Any
    ) -> contextlib.AbstractContextManager[Callable[[Any], None]] | None:
        """Counts the attempt while it runs."""
        del item, item_input
        return self._one(job.id)
