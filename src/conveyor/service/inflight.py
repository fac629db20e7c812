"""`InFlight`: the calls the service's own worker is making now, per job.

A job's ``running`` count is its claimed items: a worker claims ahead of what it can run (a
job at concurrency 20 may hold 65), so "running" overstates what is in flight. This observer
of the in-process worker follows the engine's events, per job: an attempt starts
(``ItemStarted``) and ends as a retry is scheduled (``ItemRetrying``) or as its item settles
(``ItemFinished``), so the dashboard can say how many calls are in flight. Items run by other
processes (separate ``conveyor worker``s) are not seen here: for them only the claimed count is
known.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..engine.events import ItemFinished, ItemRetrying, ItemStarted
from ..jobs.observe import JobObserver

if TYPE_CHECKING:
    from ..engine.events import Event
    from ..jobs.model import Job

__all__ = ["InFlight"]


class InFlight(JobObserver):
    """Attempts in progress in this process's worker, per job id."""

    def __init__(self) -> None:
        self._running: dict[str, set[int]] = {}

    def of(self, job_id: str) -> int:
        """The attempts at `job_id`'s items in progress now."""
        running = self._running.get(job_id)
        return len(running) if running else 0

    def event(self, job: Job, event: Event) -> None:
        """An attempt starts, or ends (retried or settled): counted by the engine's index.

        The engine's index, not the item's: it is unique for each item a run pulls, so two
        calls of one item (claimed twice) end each on its own. Ending is idempotent: an item
        cancelled while it waited to be retried ends twice.
        """
        if isinstance(event, ItemStarted):
            self._running.setdefault(job.id, set()).add(event.index)
            return
        if isinstance(event, ItemRetrying):
            index = event.index
        elif isinstance(event, ItemFinished):
            index = event.outcome.index
        else:
            return
        running = self._running.get(job.id)
        if running is not None:
            running.discard(index)
            if not running:
                del self._running[job.id]
