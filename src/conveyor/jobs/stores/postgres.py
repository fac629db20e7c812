"""`PostgresStore`: jobs in PostgreSQL, shared by many workers and service instances.

``postgresql://user@host/db?schema=conveyor``. The driver is asyncpg (chosen over psycopg 3 on
the claim and write paths: see ``docs/decisions.md`` and ``bench/pg_drivers.py``), behind a
small connection pool; every call is one transaction.

- **Claims** take a chunk of a job's lowest pending items with ``FOR UPDATE SKIP LOCKED``:
  workers claiming at once get disjoint items without waiting for each other. The worker's
  lease (one row per worker) is set in the same transaction.
- **Results** are written a batch per statement (``unnest`` of arrays), guarded by
  ``state = 'running' AND worker = me``: a worker whose lease was taken over writes nothing,
  and an item settles once. The rows actually written come back, so the job's counts move by
  exactly those.
- **Lock order**: items first, then the job's row (its counts), so transactions never wait on
  each other in a cycle; a deadlock PostgreSQL still detects (two re-queues racing) is retried.
- **Notifications** (``LISTEN``/``NOTIFY``, see the migration's trigger): every change of a
  job notifies ``<schema>.conveyor_jobs`` and work arriving notifies
  ``<schema>.conveyor_work``. `listen` hands them to callbacks: idle workers wake without
  polling, and each service instance's SSE feed re-reads a job the moment a worker anywhere
  changed it.

Times: by default the database's clock (one clock for all machines); pass ``clock=`` to use
another (the contract tests move a hand-held one).
"""

from __future__ import annotations

from itertools import groupby
from typing import TYPE_CHECKING

from .. import latency as hist
from ..errors import InvalidJob, JobStateError
from ..model import TERMINAL, Claim, ClaimedItem, admit, budget_options, reopens
from .postgres_read import Conn, PostgresReader, execute, fetch, fetchrow, fetchval

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable, Sequence

    from ..model import ItemResult, Job, NewJob

__all__ = ["PostgresStore"]

#: Items sent to the database per COPY when a job is created: bounds memory, not speed.
CREATE_CHUNK = 10_000


class PostgresStore(PostgresReader):
    """A `Store` in PostgreSQL (tables created or migrated on first use).

    The pool connects on the first call, so the store can be made outside an event loop.
    Raises `StoreError` on that first call for a database whose Conveyor schema is newer
    than this Conveyor (nothing is written).

    Args:
        url: ``postgresql://user:password@host:port/db``, optionally ``?schema=name`` to keep
            Conveyor's tables in their own schema (created if missing).
        clock: returns Unix seconds; ``None`` (default) uses the database's clock.
        min_size, max_size: the connection pool's bounds.
        migrate: bring the schema up to date on first use (``False``: refuse an old schema,
            and run ``conveyor db upgrade`` instead).
    """

    # -- writes ---------------------------------------------------------------------------

    async def create_job(
        self, job: NewJob, items: Iterable[str], *, max_active_jobs: int | None = None
    ) -> Job:
        """Create the job with all its items in one transaction (items sent by COPY)."""
        now = self._now()
        key, tenant = job.idempotency_key, job.tenant

        async def tx(c: Conn) -> Job:
            # A first count, before any item is read, refuses most creates over the limit at
            # the cost of one query. It binds nothing (other creates may commit after it):
            # the count under the tenant's lock, below, does.
            active = 0
            if max_active_jobs is not None:
                active = await fetchval(c, "unfinished_of_tenant", tenant=tenant, id=job.id)
            if key is not None:
                # After the count: a create with this key that the count saw is found here,
                # and replayed instead of refused.
                found = await fetchval(c, "job_by_key", tenant=tenant, key=key)
                if found is not None:
                    return await self._get(c, found)
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
            if await fetchval(c, "insert_job", **params) is None:
                # A create with the same key committed while this one ran: that is the job.
                found = await fetchval(c, "job_by_key", tenant=tenant, key=key)
                return await self._get(c, found)
            count = await _copy_items(c, job.id, items, self.schema)
            if count == 0:
                msg = "the job has no items: pass at least one item"
                raise InvalidJob(msg)
            await execute(c, "set_total", n=count, id=job.id)
            if max_active_jobs is not None:
                await self._admit(c, tenant, job.id, max_active_jobs)
            return await self._get(c, job.id)

        return await self._tx(tx)

    async def _admit(self, c: Conn, tenant: str, job_id: str, max_active_jobs: int) -> None:
        """The binding count of the tenant's other active jobs, for a job becoming active.

        The last statements of the transaction: creates and retries of one tenant take turns
        from here to their commits (the lock), so each count sees every one that passed
        before it, and the lock is held only for this count and the commit.
        """
        await execute(c, "lock_tenant", tenant=tenant)
        active = await fetchval(c, "unfinished_of_tenant", tenant=tenant, id=job_id)
        admit(tenant, active, max_active_jobs)

    async def claim(
        self,
        worker_id: str,
        *,
        limit: int,
        lease_s: float,
        job_id: str | None = None,
        tasks: Collection[str] | None = None,
    ) -> Claim | None:
        """Claim up to `limit` pending items of one active job (SKIP LOCKED), of `tasks`."""
        now = self._now()
        names = None if tasks is None else sorted(tasks)

        async def tx(c: Conn) -> Claim | None:
            skip: list[str] = []
            waited = False
            while True:
                if job_id is None:
                    row = await fetchrow(
                        c, "next_job", tasks=names, worker=worker_id, skip=skip or None
                    )
                else:
                    row = await fetchrow(c, "this_job", id=job_id, tasks=names, worker=worker_id)
                if row is None:
                    return None
                found, budgeted = row[0], row[1]
                if not budgeted:
                    break
                # One worker at a time on a budgeted job: claims of it take turns here, and
                # the one that finds another worker on it passes it over. Only the first lock
                # is waited for (see `lock_budgeted`); a later one busy is passed over too.
                if not waited:
                    waited = True
                    await execute(c, "lock_budgeted", job=found)
                    free = True
                else:
                    free = await fetchval(c, "try_lock_budgeted", job=found)
                if free and not await fetchval(c, "held_by_another", job=found, worker=worker_id):
                    break
                if job_id is not None:
                    return None
                skip.append(found)
            rows = await fetch(c, "claim_items", worker=worker_id, now=now, job=found, limit=limit)
            if not rows:
                return None  # every pending item is being claimed by someone else
            rows.sort()
            await execute(c, "count_claim", n=len(rows), now=now, job=found)
            await execute(c, "hold_lease", worker=worker_id, now=now, lease_s=lease_s)
            items = [ClaimedItem(found, r[0], r[1], r[2]) for r in rows]
            return Claim(await self._get(c, found), items)

        return await self._tx(tx)

    async def started(self, worker_id: str, items: Sequence[tuple[str, int]]) -> int:
        """Count an attempt for each of the worker's running `items` (one statement per job)."""
        if not items:
            return 0
        by_job: dict[str, list[int]] = {}
        for job_id, index in sorted(items):
            by_job.setdefault(job_id, []).append(index)

        async def tx(c: Conn) -> int:
            counted = 0
            for job_id, indexes in by_job.items():
                status = await execute(
                    c, "count_started", job=job_id, idx=indexes, worker=worker_id
                )
                counted += _count(status)
            return counted

        return await self._tx(tx)

    async def renew(self, worker_id: str, *, lease_s: float) -> bool:
        """Extend the lease if still held."""
        now = self._now()

        async def tx(c: Conn) -> bool:
            status = await execute(c, "renew_lease", worker=worker_id, now=now, lease_s=lease_s)
            return bool(status.endswith(" 1"))

        return await self._tx(tx)

    async def record(self, worker_id: str, results: Sequence[ItemResult]) -> int:
        """Settle a batch: one statement per job, then the job's counts."""
        if not results:
            return 0
        now = self._now()
        ordered = sorted(results, key=lambda r: (r.job_id, r.index))

        async def tx(c: Conn) -> int:
            recorded = 0
            for job_id, group in groupby(ordered, key=lambda r: r.job_id):
                batch = list(group)
                rows = await fetch(
                    c,
                    "record_items",
                    now=now,
                    job=job_id,
                    worker=worker_id,
                    idx=[r.index for r in batch],
                    state=[r.state for r in batch],
                    attempts=[r.attempts for r in batch],
                    latency=[r.latency_s for r in batch],
                    result=[r.result_json for r in batch],
                    etype=[r.error_type for r in batch],
                    emsg=[r.error_message for r in batch],
                )
                if not rows:
                    continue
                tally = {"succeeded": 0, "failed": 0, "cancelled": 0}
                latencies: list[float] = []
                for _idx, state, latency_s in rows:
                    tally[state] += 1
                    if latency_s is not None and state != "cancelled":
                        latencies.append(latency_s)
                before = await fetchval(c, "lock_hist", job=job_id)
                await execute(
                    c,
                    "count_settled",
                    n=len(rows),
                    job=job_id,
                    latency=sum(latencies),
                    hist=hist.dumps(hist.merge(hist.loads(before), latencies)),
                    **tally,
                )
                await execute(c, "settle_job", job=job_id, now=now)
                recorded += len(rows)
            return recorded

        return await self._tx(tx)

    async def release(self, worker_id: str, items: Sequence[tuple[str, int]] | None = None) -> int:
        """Put running items back (all of them, and the lease, with ``items=None``)."""
        now = self._now()
        return await self._tx(lambda c: self._release(c, worker_id, items, now))

    async def _release(
        self,
        c: Conn,
        worker: str,
        pairs: Sequence[tuple[str, int]] | None,
        now: float | None,
    ) -> int:
        by_job: dict[str, list[int] | None] = {}
        if pairs is None:
            await execute(c, "drop_lease", worker=worker)
            for (job_id,) in await fetch(c, "jobs_of_worker", worker=worker):
                by_job[job_id] = None
        else:
            for job_id, index in sorted(pairs):
                found = by_job.setdefault(job_id, [])
                assert found is not None
                found.append(index)
        moved = 0
        for job_id, indexes in sorted(by_job.items()):
            status = await fetchval(c, "status_of", job=job_id)
            if status is None:
                continue
            cancel = status == "cancelling"
            args = {"job": job_id, "worker": worker, "cancel": cancel, "now": now}
            if indexes is None:
                n = _count(await execute(c, "unrun_all", **args))
            else:
                n = _count(await execute(c, "unrun_some", idx=indexes, **args))
            if n:
                pending, cancelled = (0, n) if cancel else (n, 0)
                await execute(
                    c, "count_unrun", n=n, job=job_id, pending=pending, cancelled=cancelled
                )
                await execute(c, "settle_job", job=job_id, now=now)
                moved += n
        return moved

    async def requeue_expired(self) -> int:
        """Release the items of every lapsed lease (each taken by one caller)."""
        now = self._now()

        async def tx(c: Conn) -> int:
            moved = 0
            for (worker,) in await fetch(c, "take_expired_workers", now=now):
                # Attempts already count (`started`): claimed, never started, count none.
                moved += await self._release(c, worker, None, now)
            return moved

        return await self._tx(tx)

    async def request_cancel(self, job_id: str) -> Job:
        """Cancel the job: pending items at once, running ones by their workers."""
        now = self._now()

        async def tx(c: Conn) -> Job:
            job = await self._get(c, job_id)
            if job.status in TERMINAL:
                return job
            n = _count(await execute(c, "cancel_pending", job=job_id, now=now))
            await execute(c, "count_cancel", n=n, job=job_id)
            await execute(c, "settle_job", job=job_id, now=now)
            return await self._get(c, job_id)

        return await self._tx(tx)

    async def retry_failed(self, job_id: str, *, max_active_jobs: int | None = None) -> int:
        """Failed items back to pending; the job back to queued (within the tenant's limit)."""
        now = self._now()

        async def tx(c: Conn) -> int:
            job = await self._get(c, job_id)
            if job.status in {"cancelled", "cancelling", "failed"}:
                msg = (
                    f"job {job_id} is {job.status}: only a queued, running or completed job"
                    " can retry its failed items"
                )
                raise JobStateError(msg)
            limit = max_active_jobs if reopens(job) else None
            if limit is not None:
                # As a create: a first count refuses most retries over the limit before any
                # item moves, and the binding one comes last, under the tenant's lock.
                active = await fetchval(c, "unfinished_of_tenant", tenant=job.tenant, id=job.id)
                admit(job.tenant, active, limit)
            rows = await fetch(c, "retry_failed_items", job=job_id)
            if not rows:
                return 0
            latencies = [r[0] for r in rows if r[0] is not None]
            before = await fetchval(c, "lock_hist", job=job_id)
            left = hist.merge(hist.loads(before), latencies, sign=-1)
            await execute(
                c,
                "count_retry",
                n=len(rows),
                job=job_id,
                latency=sum(latencies),
                hist=hist.dumps(left),
                now=now,
            )
            if limit is not None:
                await self._admit(c, job.tenant, job.id, limit)
            return len(rows)

        return await self._tx(tx)

    async def set_budget(self, job_id: str, max_cost_usd: float | None) -> Job:
        """Set the job's spend budget (its options' ``max_cost_usd``)."""

        async def tx(c: Conn) -> Job:
            options = budget_options(await self._get(c, job_id), max_cost_usd)
            await execute(c, "set_options", job=job_id, options=options.to_json())
            return await self._get(c, job_id)

        return await self._tx(tx)

    async def fail_job(self, job_id: str, error: str) -> Job:
        """The job could not run: failed, its unsettled items cancelled."""
        now = self._now()

        async def tx(c: Conn) -> Job:
            await self._get(c, job_id)
            await execute(c, "fail_items", job=job_id, now=now)
            await execute(c, "fail_job", job=job_id, error=error, now=now)
            return await self._get(c, job_id)

        return await self._tx(tx)

    async def set_progress(self, job_id: str, *, inflight: float, step: str | None) -> None:
        """Publish in-flight progress and the step (notifies every service instance)."""

        async def tx(c: Conn) -> None:
            await execute(c, "set_progress", job=job_id, inflight=inflight, step=step)

        await self._tx(tx)


async def _copy_items(c: Conn, job_id: str, items: Iterable[str], schema: str | None) -> int:
    """Send the job's items by COPY, `CREATE_CHUNK` at a time; how many there were."""
    count = 0
    chunk: list[tuple[str, int, str]] = []
    for index, text in enumerate(items):
        chunk.append((job_id, index, text))
        count = index + 1
        if len(chunk) >= CREATE_CHUNK:
            await _copy_chunk(c, chunk, schema)
            chunk = []
    if chunk:
        await _copy_chunk(c, chunk, schema)
    return count


async def _copy_chunk(c: Conn, rows: list[tuple[str, int, str]], schema: str | None) -> None:
    await c.copy_records_to_table(
        "conveyor_items", records=rows, columns=("job_id", "idx", "input"), schema_name=schema
    )


def _count(status: str) -> int:
    """Rows touched, from a command status such as ``UPDATE 3``."""
    return int(status.rsplit(" ", 1)[-1])
