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

import asyncio
import logging
from itertools import groupby
from typing import TYPE_CHECKING, Any, TypeVar

from .. import latency as hist
from ..errors import InvalidJob, JobNotFound, JobStateError, StoreError
from ..model import TERMINAL, Claim, ClaimedItem
from .postgres_schema import create_schema, migrate, queries, split_url
from .sqlite_read import item_from_row, job_from_row

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence

    from ..model import ItemResult, ItemState, Job, JobItem, JobStatus, NewJob

__all__ = ["PostgresStore"]

logger = logging.getLogger("conveyor.jobs")
T = TypeVar("T")
Q = queries()
#: Items sent to the database per COPY when a job is created: bounds memory, not speed.
CREATE_CHUNK = 10_000
#: A transaction that deadlocked (PostgreSQL aborts one side) is run again, this many times.
DEADLOCK_TRIES = 5

Conn = Any  # an asyncpg connection (typed loosely: asyncpg ships no stubs)


def _import_asyncpg() -> Any:
    try:
        import asyncpg  # noqa: PLC0415 - the driver only when a PostgreSQL store is used
    except ImportError:  # pragma: no cover - depends on the install
        msg = "the PostgreSQL store needs the asyncpg driver: pip install 'conveyor[postgres]'"
        raise StoreError(msg) from None
    return asyncpg


class PostgresStore:
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

    def __init__(
        self,
        url: str,
        *,
        clock: Callable[[], float] | None = None,
        min_size: int = 1,
        max_size: int = 4,
        migrate: bool = True,
    ) -> None:
        self.url = url
        self._dsn, self.schema = split_url(url)
        self._clock = clock
        self._min_size = min_size
        self._max_size = max_size
        self._migrate = migrate
        self._pool: Any = None
        self._opening: asyncio.Lock | None = None
        self._listener: Conn | None = None
        self._callbacks: dict[str, list[Callable[[str], None]]] = {}
        self._closed = False

    # -- connections ----------------------------------------------------------------------

    @property
    def channel_prefix(self) -> str:
        """The notification channels' prefix: the schema the tables live in."""
        return self.schema or "public"

    def _settings(self) -> dict[str, str]:
        settings = {"application_name": "conveyor"}
        if self.schema is not None:
            settings["search_path"] = self.schema
        return settings

    async def _connect_one(self) -> Conn:
        asyncpg = _import_asyncpg()
        return await asyncpg.connect(self._dsn, server_settings=self._settings())

    async def _pool_or_open(self) -> Any:
        if self._pool is not None:
            return self._pool
        if self._closed:
            msg = "the PostgreSQL store is closed"
            raise StoreError(msg)
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._pool is None:
                await self.upgrade(only_check=not self._migrate)
                asyncpg = _import_asyncpg()
                self._pool = await asyncpg.create_pool(
                    self._dsn,
                    min_size=self._min_size,
                    max_size=self._max_size,
                    server_settings=self._settings(),
                )
        return self._pool

    async def upgrade(self, *, only_check: bool = False) -> tuple[int, int]:
        """Create the schema or migrate it to the latest version; ``(before, after)``.

        With `only_check`, raise `StoreError` unless the schema is already current.
        """
        from .postgres_schema import LATEST_VERSION, current_version  # noqa: PLC0415

        conn = await self._connect_one()
        try:
            if self.schema is not None:
                await create_schema(conn, self.schema)
            if only_check:
                version = await current_version(conn)
                if version != LATEST_VERSION:
                    msg = (
                        f"the job store schema is at version {version}, this Conveyor needs"
                        f" {LATEST_VERSION}: run `conveyor db upgrade --store <url>`"
                    )
                    raise StoreError(msg)
                return version, version
            return await migrate(conn, where=f"the database of {self._redacted()}")
        finally:
            await conn.close()

    def _redacted(self) -> str:
        dsn = self._dsn
        if "@" in dsn:
            scheme, _, rest = dsn.partition("://")
            dsn = f"{scheme}://***@{rest.rpartition('@')[2]}"
        return dsn

    def _now(self) -> float | None:
        return None if self._clock is None else self._clock()

    async def _tx(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        """Run `fn(conn)` in one transaction; again if PostgreSQL broke a deadlock with it."""
        pool = await self._pool_or_open()
        asyncpg = _import_asyncpg()
        for attempt in range(DEADLOCK_TRIES):
            async with pool.acquire() as conn:
                try:
                    async with conn.transaction():
                        return await fn(conn)
                except asyncpg.exceptions.DeadlockDetectedError:
                    if attempt == DEADLOCK_TRIES - 1:
                        raise
                    logger.info("conveyor store: a transaction deadlocked; running it again")
        raise AssertionError  # pragma: no cover - the loop returns or raises

    async def _read(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        pool = await self._pool_or_open()
        async with pool.acquire() as conn:
            return await fn(conn)

    # -- notifications --------------------------------------------------------------------

    async def listen(self, channel: str, callback: Callable[[str], None]) -> None:
        """Call ``callback(job_id)`` on each notification of `channel` (``"jobs"``, ``"work"``).

        ``"jobs"``: a job changed (any process, any machine). ``"work"``: a job gained pending
        items. Delivered at the commit of the change; one listening connection per store.
        """
        await self._pool_or_open()
        if self._listener is None:
            self._listener = await self._connect_one()
        name = f"{self.channel_prefix}.conveyor_{channel}"
        callbacks = self._callbacks.setdefault(name, [])
        if not callbacks:

            def dispatch(_conn: object, _pid: int, _channel: str, payload: str) -> None:
                for cb in list(self._callbacks.get(name, ())):
                    cb(payload)

            await self._listener.add_listener(name, dispatch)
        callbacks.append(callback)

    # -- writes ---------------------------------------------------------------------------

    async def create_job(self, job: NewJob, items: Iterable[str]) -> Job:
        """Create the job with all its items in one transaction (items sent by COPY)."""
        now = self._now()

        async def tx(c: Conn) -> Job:
            key = job.idempotency_key
            if key is not None:
                found = await _fetchval(c, "job_by_key", tenant=job.tenant, key=key)
                if found is not None:
                    return await self._get(c, found)
            params = {
                "id": job.id,
                "task": job.task,
                "options": job.options.to_json(),
                "now": now,
                "tenant": job.tenant,
                "key": key,
                "hash": job.request_hash,
            }
            await _execute(c, "insert_job", **params)
            count = 0
            chunk: list[tuple[str, int, str]] = []
            for index, text in enumerate(items):
                chunk.append((job.id, index, text))
                count = index + 1
                if len(chunk) >= CREATE_CHUNK:
                    await _copy_items(c, chunk, self.schema)
                    chunk = []
            if chunk:
                await _copy_items(c, chunk, self.schema)
            if count == 0:
                msg = "the job has no items: pass at least one item"
                raise InvalidJob(msg)
            await _execute(c, "set_total", n=count, id=job.id)
            return await self._get(c, job.id)

        return await self._tx(tx)

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
            if job_id is None:
                found = await _fetchval(c, "next_job", tasks=names)
            else:
                found = await _fetchval(c, "this_job", id=job_id, tasks=names)
            if found is None:
                return None
            rows = await _fetch(c, "claim_items", worker=worker_id, now=now, job=found, limit=limit)
            if not rows:
                return None  # every pending item is being claimed by someone else
            rows.sort()
            await _execute(c, "count_claim", n=len(rows), now=now, job=found)
            await _execute(c, "hold_lease", worker=worker_id, now=now, lease_s=lease_s)
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
                status = await _execute(
                    c, "count_started", job=job_id, idx=indexes, worker=worker_id
                )
                counted += _count(status)
            return counted

        return await self._tx(tx)

    async def renew(self, worker_id: str, *, lease_s: float) -> bool:
        """Extend the lease if still held."""
        now = self._now()

        async def tx(c: Conn) -> bool:
            status = await _execute(c, "renew_lease", worker=worker_id, now=now, lease_s=lease_s)
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
                rows = await _fetch(
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
                before = await _fetchval(c, "lock_hist", job=job_id)
                await _execute(
                    c,
                    "count_settled",
                    n=len(rows),
                    job=job_id,
                    latency=sum(latencies),
                    hist=hist.dumps(hist.merge(hist.loads(before), latencies)),
                    **tally,
                )
                await _execute(c, "settle_job", job=job_id, now=now)
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
            await _execute(c, "drop_lease", worker=worker)
            for (job_id,) in await _fetch(c, "jobs_of_worker", worker=worker):
                by_job[job_id] = None
        else:
            for job_id, index in sorted(pairs):
                found = by_job.setdefault(job_id, [])
                assert found is not None
                found.append(index)
        moved = 0
        for job_id, indexes in sorted(by_job.items()):
            status = await _fetchval(c, "status_of", job=job_id)
            if status is None:
                continue
            cancel = status == "cancelling"
            args = {"job": job_id, "worker": worker, "cancel": cancel, "now": now}
            if indexes is None:
                n = _count(await _execute(c, "unrun_all", **args))
            else:
                n = _count(await _execute(c, "unrun_some", idx=indexes, **args))
            if n:
                pending, cancelled = (0, n) if cancel else (n, 0)
                await _execute(
                    c, "count_unrun", n=n, job=job_id, pending=pending, cancelled=cancelled
                )
                await _execute(c, "settle_job", job=job_id, now=now)
                moved += n
        return moved

    async def requeue_expired(self) -> int:
        """Release the items of every lapsed lease (each taken by one caller)."""
        now = self._now()

        async def tx(c: Conn) -> int:
            moved = 0
            for (worker,) in await _fetch(c, "take_expired_workers", now=now):
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
            n = _count(await _execute(c, "cancel_pending", job=job_id, now=now))
            await _execute(c, "count_cancel", n=n, job=job_id)
            await _execute(c, "settle_job", job=job_id, now=now)
            return await self._get(c, job_id)

        return await self._tx(tx)

    async def retry_failed(self, job_id: str) -> int:
        """Failed items back to pending; the job back to queued."""
        now = self._now()

        async def tx(c: Conn) -> int:
            job = await self._get(c, job_id)
            if job.status in {"cancelled", "cancelling", "failed"}:
                msg = (
                    f"job {job_id} is {job.status}: only a queued, running or completed job"
                    " can retry its failed items"
                )
                raise JobStateError(msg)
            rows = await _fetch(c, "retry_failed_items", job=job_id)
            if not rows:
                return 0
            latencies = [r[0] for r in rows if r[0] is not None]
            before = await _fetchval(c, "lock_hist", job=job_id)
            left = hist.merge(hist.loads(before), latencies, sign=-1)
            await _execute(
                c,
                "count_retry",
                n=len(rows),
                job=job_id,
                latency=sum(latencies),
                hist=hist.dumps(left),
                now=now,
            )
            return len(rows)

        return await self._tx(tx)

    async def fail_job(self, job_id: str, error: str) -> Job:
        """The job could not run: failed, its unsettled items cancelled."""
        now = self._now()

        async def tx(c: Conn) -> Job:
            await self._get(c, job_id)
            await _execute(c, "fail_items", job=job_id, now=now)
            await _execute(c, "fail_job", job=job_id, error=error, now=now)
            return await self._get(c, job_id)

        return await self._tx(tx)

    async def set_progress(self, job_id: str, *, inflight: float, step: str | None) -> None:
        """Publish in-flight progress and the step (notifies every service instance)."""

        async def tx(c: Conn) -> None:
            await _execute(c, "set_progress", job=job_id, inflight=inflight, step=step)

        await self._tx(tx)

    # -- reads ----------------------------------------------------------------------------

    async def _get(self, c: Conn, job_id: str) -> Job:
        row = await _fetchrow(c, "get_job", id=job_id)
        if row is None:
            raise JobNotFound(job_id)
        return job_from_row(tuple(row))

    async def get_job(self, job_id: str) -> Job | None:
        """The job, or None."""

        async def read(c: Conn) -> Job | None:
            row = await _fetchrow(c, "get_job", id=job_id)
            return None if row is None else job_from_row(tuple(row))

        return await self._read(read)

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

        async def read(c: Conn) -> list[Job]:
            rows = await _fetch(
                c, "list_jobs", status=status, limit=limit, tenant=tenant, task=task, before=before
            )
            return [job_from_row(tuple(r)) for r in rows]

        return await self._read(read)

    async def any_active(self) -> bool:
        """Whether any job is queued, running or being cancelled (one query)."""
        return bool(await self._read(lambda c: _fetchval(c, "any_active")))

    async def items(
        self,
        job_id: str,
        *,
        state: ItemState | None = None,
        after: int = -1,
        limit: int = 1000,
    ) -> list[JobItem]:
        """A page of items in index order."""

        async def read(c: Conn) -> list[JobItem]:
            if await _fetchrow(c, "get_job", id=job_id) is None:
                raise JobNotFound(job_id)
            if state is None:
                rows = await _fetch(c, "items_page", job=job_id, after=after, limit=limit)
            else:
                rows = await _fetch(
                    c, "items_page_by_state", job=job_id, state=state, after=after, limit=limit
                )
            return [item_from_row(job_id, tuple(r)) for r in rows]

        return await self._read(read)

    async def close(self) -> None:
        """Close the listening connection and the pool."""
        if self._closed:
            return
        self._closed = True
        if self._listener is not None:
            await self._listener.close()
            self._listener = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    def terminate(self) -> None:
        """Drop every connection at once, without a loop (for tests whose loop has ended)."""
        self._closed = True
        if self._listener is not None:
            self._listener.terminate()
            self._listener = None
        if self._pool is not None:
            self._pool.terminate()
            self._pool = None


# -- statement helpers (named parameters in, asyncpg's positional ones out) ----------------


async def _execute(c: Conn, name: str, **params: Any) -> str:
    q = Q[name]
    return str(await c.execute(q.sql, *q.args(params)))


async def _fetch(c: Conn, name: str, **params: Any) -> list[Any]:
    q = Q[name]
    return list(await c.fetch(q.sql, *q.args(params)))


async def _fetchrow(c: Conn, name: str, **params: Any) -> Any:
    q = Q[name]
    return await c.fetchrow(q.sql, *q.args(params))


async def _fetchval(c: Conn, name: str, **params: Any) -> Any:
    q = Q[name]
    return await c.fetchval(q.sql, *q.args(params))


async def _copy_items(c: Conn, rows: list[tuple[str, int, str]], schema: str | None) -> None:
    await c.copy_records_to_table(
        "conveyor_items", records=rows, columns=("job_id", "idx", "input"), schema_name=schema
    )


def _count(status: str) -> int:
    """Rows touched, from a command status such as ``UPDATE 3``."""
    return int(status.rsplit(" ", 1)[-1])
