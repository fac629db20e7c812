"""A job's change feed, shared by every client that follows it.

However many clients follow a job (a dashboard, 200 event streams), the service reads it from
the store once per ``interval_s``, in one task per watched job, and hands each new snapshot
(a higher `Job.version`) to every follower. So the cost of the streams on the store is one
primary-key read per watched job per interval, not one per client; the task ends when the
last follower leaves or the job is done.

A follower that resumes (``Last-Event-ID``) passes the version it saw last: it gets the
current snapshot only if the job changed since. Snapshots are whole states, not deltas, so a
follower that skips some (it was slow, or away) has lost nothing: the latest one says it all.
Every follow ends with the job's final state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from ..jobs.errors import StoreUnavailable

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from ..jobs.model import Job
    from ..jobs.store import Store

__all__ = ["JobFeed"]

logger = logging.getLogger("conveyor.service")


class _Watch:
    """One watched job: its latest snapshot and an event set (then replaced) on each change."""

    def __init__(self, job: Job) -> None:
        self.latest = job
        self.changed = asyncio.Event()
        self.followers = 0
        self.task: asyncio.Task[None] | None = None
        self.poke = asyncio.Event()
        self.store_down = False  # the last read failed for want of the store

    def publish(self, job: Job) -> None:
        if job.version == self.latest.version and job.status == self.latest.status:
            return
        self.latest = job
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()


class JobFeed:
    """Follow jobs' changes; see the module docstring."""

    def __init__(self, store: Store, *, interval_s: float = 0.25) -> None:
        self._store = store
        self.interval_s = interval_s
        self._watches: dict[str, _Watch] = {}
        self._listening = False

    async def _listen(self) -> None:
        """On a store that notifies (PostgreSQL), read a job as soon as anyone changed it.

        Workers and service instances anywhere notify at each commit that changes a job, so
        a follower here sees the progress of a job run by a worker on another machine within
        a round trip; the interval's read remains as the fallback.
        """
        listen = getattr(self._store, "listen", None)
        if listen is None or self._listening:
            return
        self._listening = True
        try:
            await listen("jobs", self.poke)
        except StoreUnavailable as exc:  # tried again by the next follower; polled meanwhile
            self._listening = False
            logger.warning("conveyor service: not listening for job changes (%s); polling", exc)
        except Exception:
            self._listening = False
            logger.exception("conveyor service: listening for job changes failed; polling")

    async def _poll(self, job_id: str, watch: _Watch) -> None:
        while watch.followers > 0 and not watch.latest.done:
            watch.poke.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval_s):
                    await watch.poke.wait()
            try:
                job = await self._store.get_job(job_id)
            except StoreUnavailable as exc:
                # The follower keeps the last state; the feed reads again next interval. Said
                # once per outage (the store's own 503s and /healthz say the rest).
                if not watch.store_down:
                    watch.store_down = True
                    logger.warning("conveyor service: the feed of job %s waits: %s", job_id, exc)
                continue
            except Exception:
                logger.exception("conveyor service: reading job %s for its feed failed", job_id)
                continue
            watch.store_down = False
            if job is not None:
                watch.publish(job)
        if self._watches.get(job_id) is watch:
            del self._watches[job_id]

    def poke(self, job_id: str) -> None:
        """Read the job now, not at the end of the interval (after the service changed it)."""
        watch = self._watches.get(job_id)
        if watch is not None:
            watch.poke.set()

    @property
    def watched(self) -> int:
        """How many jobs are being read for followers now."""
        return len(self._watches)

    async def follow(
        self, job: Job, *, after_version: int | None = None, keepalive_s: float = 15.0
    ) -> AsyncIterator[Job | None]:
        """Yield the job's snapshots from `job` on; end after the final one.

        Yields ``None`` after `keepalive_s` without a change (a stream sends a comment then,
        so proxies keep the connection open).
        """
        await self._listen()
        watch = self._watches.get(job.id)
        if watch is None:
            watch = self._watches[job.id] = _Watch(job)
        if job.version > watch.latest.version:
            watch.publish(job)
        watch.followers += 1
        if watch.task is None or watch.task.done():
            watch.task = asyncio.get_running_loop().create_task(self._poll(job.id, watch))
        try:
            seen = after_version
            while True:
                current = watch.latest
                changed = watch.changed
                if seen is None or current.version > seen or current.done:
                    seen = current.version
                    yield current
                    if current.done:
                        return
                    continue
                try:
                    async with asyncio.timeout(keepalive_s):
                        await changed.wait()
                except TimeoutError:
                    yield None
        finally:
            watch.followers -= 1
            if watch.followers == 0:
                watch.poke.set()  # the poller sees no followers and ends
