"""The job rules, written once: what every store does inside one transaction.

`JobRules` holds, for each `conveyor.jobs.store.Store` call, the steps it takes on a
`Connection`: the guards and their messages, the state transitions, the tallies of a batch
of results and the merge of their latencies into the job's histogram, the grouping of items
by job, the idempotency key and the tenant's active-job limit at admission, and settling a
job that has nothing left to run. The statements are the dialect's named queries; the rules
never see SQL, a driver or a thread.

Written for the strictest backend, PostgreSQL, where transactions run at once: lock order is
items first, the job's row last; a count that admits a job is taken last, under the tenant's
lock; a budgeted job is claimed under its own lock. On SQLite (and in memory) a write
transaction runs alone, and those locks are no-ops (``SELECT 1``).
"""

from __future__ import annotations

import math
from collections import Counter
from itertools import groupby
from typing import TYPE_CHECKING

from .. import latency as hist
from ..errors import InvalidJob, JobNotFound, JobStateError
from ..file_model import FileItems
from ..model import TERMINAL, UNFINISHED, Claim, ClaimedItem, Counts, admit, budget_options, reopens
from ..settle import failed_by_items, failure_error, final_step, settled_status
from .connector import item_from_row, job_from_row
from .file_rules import file_items

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from ..model import ItemResult, ItemState, Job, JobItem, NewJob
    from .connector import Connection

__all__ = ["JobRules"]


class JobRules:
    """Every store call's steps, given a `Connection` in a transaction (reads: outside one).

    Times: `now` is the store clock's Unix seconds, or None for the database's clock.
    """

    # -- reads ------------------------------------------------------------------------------

    async def get(self, c: Connection, job_id: str) -> Job:
        """The job; `JobNotFound` if there is none."""
        row = await c.fetchrow("get_job", id=job_id)
        if row is None:
            raise JobNotFound(job_id)
        return job_from_row(row)

    async def get_job(self, c: Connection, job_id: str) -> Job | None:
        """The job, or None."""
        row = await c.fetchrow("get_job", id=job_id)
        return None if row is None else job_from_row(row)

    async def list_jobs(self, c: Connection, **filters: object) -> list[Job]:
        """Newest first; `filters` are the ``list_jobs`` query's parameters."""
        return [job_from_row(r) for r in await c.fetch("list_jobs", **filters)]

    async def items(
        self, c: Connection, job_id: str, state: ItemState | None, after: int, limit: int
    ) -> list[JobItem]:
        """A page of the job's items in index order."""
        await self.get(c, job_id)
        if state is None:
            rows = await c.fetch("items_page", job=job_id, after=after, limit=limit)
        else:
            page = {"job": job_id, "state": state, "after": after, "limit": limit}
            rows = await c.fetch("items_page_by_state", **page)
        return [item_from_row(job_id, r) for r in rows]

    # -- admission --------------------------------------------------------------------------

    async def create_job(
        self,
        c: Connection,
        job: NewJob,
        items: Iterable[str] | FileItems,
        now: float | None,
        max_active_jobs: int | None,
    ) -> Job:
        """Insert the job and its items, once per idempotency key, within the tenant's limit.

        Items from a file (`FileItems`) are read on `c`, in this transaction.
        """
        key, tenant = job.idempotency_key, job.tenant
        # A first count, before any item is read, refuses most creates over the limit at the
        # cost of one query. Where transactions run at once it binds nothing: the count under
        # the tenant's lock, at the end, does.
        active = 0
        if max_active_jobs is not None:
            active = await c.fetchval("unfinished_of_tenant", tenant=tenant, id=job.id)
        if key is not None:
            # After the count: a create with this key that the count saw is found here, and
            # replayed instead of refused.
            found = await c.fetchval("job_by_key", tenant=tenant, key=key)
            if found is not None:
                return await self.get(c, found)
        admit(tenant, active, max_active_jobs)
        params = {
            "id": job.id,
            "task": job.task,
            "options": job.options.to_json(),
            "now": now,
            "tenant": tenant,
            "key": key,
            "hash": job.request_hash,
        }
        if await c.fetchval("insert_job", **params) is None:
            # A create with the same key committed while this one ran: that is the job.
            return await self.get(c, await c.fetchval("job_by_key", tenant=tenant, key=key))
        source = file_items(c, items, tenant) if isinstance(items, FileItems) else items
        count = await c.insert_items(job.id, source)
        if count == 0:
            msg = "the job has no items: pass at least one item"
            raise InvalidJob(msg)
        await c.execute("set_total", n=count, id=job.id)
        if max_active_jobs is not None:
            await self._admit(c, tenant, job.id, max_active_jobs)
        return await self.get(c, job.id)

    async def _admit(self, c: Connection, tenant: str, job_id: str, max_active_jobs: int) -> None:
        """The binding count of the tenant's other active jobs, for a job becoming active.

        The last statements of the transaction: creates and retries of one tenant take turns
        from here to their commits (the lock), so each count sees every one that passed
        before it, and the lock is held only for this count and the commit.
        """
        await c.execute("lock_tenant", tenant=tenant)
        active = await c.fetchval("unfinished_of_tenant", tenant=tenant, id=job_id)
        admit(tenant, active, max_active_jobs)

    # -- claims and leases ------------------------------------------------------------------

    async def claim(
        self,
        c: Connection,
        worker: str,
        limit: int,
        lease_s: float,
        job_id: str | None,
        tasks: list[str] | None,
        now: float | None,
    ) -> Claim | None:
        """Claim up to `limit` pending items of one active job (`job_id`'s, or the oldest)."""
        skip: list[str] = []
        waited = False
        while True:
            if job_id is None:
                row = await c.fetchrow("next_job", tasks=tasks, worker=worker, skip=skip or None)
            else:
                row = await c.fetchrow("this_job", id=job_id, tasks=tasks, worker=worker)
            if row is None:
                return None
            found, budgeted = row[0], row[1]
            if not budgeted:
                break
            # One worker at a time on a budgeted job: claims of it take turns here, and the
            # one that finds another worker on it passes it over. Only the first lock is
            # waited for (see the query `lock_budgeted`); a later one busy is passed over too.
            if not waited:
                waited = True
                await c.execute("lock_budgeted", job=found)
                free = True
            else:
                free = bool(await c.fetchval("try_lock_budgeted", job=found))
            if free and not await c.fetchval("held_by_another", job=found, worker=worker):
                break
            if job_id is not None:
                return None
            skip.append(found)
        rows = await c.fetch("claim_items", worker=worker, now=now, job=found, limit=limit)
        if not rows:
            return None  # every pending item is being claimed by someone else
        rows.sort(key=lambda r: r[0])  # by index
        await c.execute("count_claim", n=len(rows), now=now, job=found)
        await c.execute("hold_lease", worker=worker, now=now, lease_s=lease_s)
        items = [ClaimedItem(found, r[0], r[1], r[2]) for r in rows]
        return Claim(await self.get(c, found), items)

    async def started(self, c: Connection, worker: str, items: Sequence[tuple[str, int]]) -> int:
        """Count an attempt for each of the worker's running `items`: one statement a job."""
        counted = 0
        for job_id, indexes in _by_job(items).items():
            counted += await c.execute("count_started", job=job_id, idx=indexes, worker=worker)
        return counted

    async def renew(self, c: Connection, worker: str, lease_s: float, now: float | None) -> bool:
        """Extend the worker's lease, if it is still held."""
        return await c.execute("renew_lease", worker=worker, now=now, lease_s=lease_s) == 1

    # -- results ----------------------------------------------------------------------------

    async def record(
        self, c: Connection, worker: str, results: Sequence[ItemResult], now: float | None
    ) -> int:
        """Settle the worker's items, a job at a time: the items, then the job's tallies."""
        recorded = 0
        ordered = sorted(results, key=lambda r: (r.job_id, r.index))
        for job_id, group in groupby(ordered, key=lambda r: r.job_id):
            written = await c.record_items(job_id, worker, now, list(group))
            if not written:
                continue
            tally = {"succeeded": 0, "failed": 0, "cancelled": 0}
            latencies: list[float] = []
            per_second: Counter[int] = Counter()
            for r in written:
                tally[r.state] += 1
                if r.state == "cancelled":
                    continue
                if r.latency_s is not None:
                    latencies.append(r.latency_s)
                if r.finished_at is not None:
                    per_second[math.floor(r.finished_at)] += 1
            for second, n in sorted(per_second.items()):
                await c.execute("add_rate", job=job_id, second=second, n=n)
            before = await c.fetchval("lock_hist", job=job_id)
            merged = hist.dumps(hist.merge(hist.loads(before), latencies))
            params = {"n": len(written), "job": job_id, "latency": sum(latencies), "hist": merged}
            await c.execute("count_settled", **params, **tally)
            await self._settle(c, job_id, now)
            recorded += len(written)
        return recorded

    async def release(
        self,
        c: Connection,
        worker: str,
        items: Sequence[tuple[str, int]] | None,
        now: float | None,
    ) -> int:
        """Put the worker's running items back (all, and its lease, with `items` None)."""
        by_job: dict[str, list[int] | None]
        if items is None:
            await c.execute("drop_lease", worker=worker)
            by_job = {row[0]: None for row in await c.fetch("jobs_of_worker", worker=worker)}
        else:
            by_job = dict(_by_job(items))
        moved = 0
        for job_id, indexes in sorted(by_job.items()):
            status = await c.fetchval("status_of", job=job_id)
            if status is None:
                continue
            # In a job being cancelled, an item handed back is cancelled, not run again.
            cancel = status == "cancelling"
            args = {"job": job_id, "worker": worker, "cancel": cancel, "now": now}
            if indexes is None:
                n = await c.execute("unrun_all", **args)
            else:
                n = await c.execute("unrun_some", idx=indexes, **args)
            if n:
                pending, cancelled = (0, n) if cancel else (n, 0)
                counts = {"pending": pending, "cancelled": cancelled}
                await c.execute("count_unrun", n=n, job=job_id, **counts)
                await self._settle(c, job_id, now)
                moved += n
        return moved

    async def requeue_expired(self, c: Connection, now: float | None) -> int:
        """Release the items of every lapsed lease (each taken by one caller)."""
        moved = 0
        for row in await c.fetch("take_expired_workers", now=now):
            # Attempts already count (`started`): claimed, never started, count none.
            moved += await self.release(c, row[0], None, now)
        return moved

    # -- the job's life ---------------------------------------------------------------------

    async def request_cancel(self, c: Connection, job_id: str, now: float | None) -> Job:
        """Cancel the pending items now; the job is cancelling while items run."""
        job = await self.get(c, job_id)
        if job.status in TERMINAL:
            return job
        n = await c.execute("cancel_pending", job=job_id, now=now)
        await c.execute("count_cancel", n=n, job=job_id)
        await self._settle(c, job_id, now)
        return await self.get(c, job_id)

    async def retry_failed(
        self, c: Connection, job_id: str, now: float | None, max_active_jobs: int | None
    ) -> int:
        """Failed items back to pending; a completed job back to queued, within the limit."""
        job = await self.get(c, job_id)
        if job.status == "failed" and not failed_by_items(job):
            msg = (
                f"job {job_id} is failed: it could not run ({job.error}), so running its items"
                " again cannot help; fix the cause and submit it again"
            )
            raise JobStateError(msg)
        if job.status in {"cancelled", "cancelling"}:
            msg = (
                f"job {job_id} is {job.status}: only a queued, running, completed or failed job"
                " can retry its failed items"
            )
            raise JobStateError(msg)
        limit = max_active_jobs if reopens(job) else None
        if limit is not None:
            # As a create: a first count refuses most retries over the limit before any item
            # moves, and the binding one comes last, under the tenant's lock.
            active = await c.fetchval("unfinished_of_tenant", tenant=job.tenant, id=job_id)
            admit(job.tenant, active, limit)
        rows = await c.fetch("failed_items", job=job_id)
        if not rows:
            return 0
        n = await c.execute("retry_items", job=job_id, idx=[r[0] for r in rows])
        latencies = [r[1] for r in rows if r[1] is not None]
        before = await c.fetchval("lock_hist", job=job_id)
        left = hist.dumps(hist.merge(hist.loads(before), latencies, sign=-1))
        params = {"n": n, "job": job_id, "latency": sum(latencies), "hist": left}
        await c.execute("count_retry", **params, now=now)
        if limit is not None:
            await self._admit(c, job.tenant, job_id, limit)
        return n

    async def set_budget(self, c: Connection, job_id: str, max_cost_usd: float | None) -> Job:
        """Set the job's spend budget (its options' ``max_cost_usd``)."""
        options = budget_options(await self.get(c, job_id), max_cost_usd)
        await c.execute("set_options", job=job_id, options=options.to_json())
        return await self.get(c, job_id)

    async def fail_job(self, c: Connection, job_id: str, error: str, now: float | None) -> Job:
        """The job could not run: failed, its unsettled items cancelled."""
        job = await self.get(c, job_id)
        await c.execute("fail_items", job=job_id, now=now)
        step = final_step("failed", job.counts, error)
        await c.execute("fail_job", job=job_id, error=error, step=step, now=now)
        return await self.get(c, job_id)

    async def _settle(self, c: Connection, job_id: str, now: float | None) -> None:
        """End the job if nothing is left to run, as the settle rule says (`..settle`).

        Called after the job's row was written in this transaction (so it is locked).
        """
        row = await c.fetchrow("settle_counts", job=job_id)
        if row is None or row[0] not in UNFINISHED or row[2] or row[3]:
            return
        counts = Counts(row[1], row[2], row[3], row[4], row[5], row[6])
        status = settled_status(row[0], counts)
        error = None
        if status == "failed":
            first = await c.fetchrow("first_failure", job=job_id)
            if first is not None:
                error = failure_error(counts, first[0], first[1], first[2])
        step = final_step(status, counts, error)
        await c.execute("settle_job", job=job_id, status=status, error=error, step=step, now=now)

    async def set_progress(
        self, c: Connection, job_id: str, inflight: float, step: str | None
    ) -> None:
        """Publish the in-flight progress and the step (a done job is left as is)."""
        await c.execute("set_progress", job=job_id, inflight=inflight, step=step)


def _by_job(items: Sequence[tuple[str, int]]) -> dict[str, list[int]]:
    """(job id, index) pairs grouped by job, both in order (the lock order of items)."""
    by_job: dict[str, list[int]] = {}
    for job_id, index in sorted(items):
        by_job.setdefault(job_id, []).append(index)
    return by_job
