"""`SqliteStore`: the default store, one SQLite file in WAL mode, stdlib `sqlite3` only.

Two threads, each owning one connection:

- the **writer** runs every write, one transaction per call (``BEGIN IMMEDIATE``, so two
  processes sharing the file take turns instead of deadlocking). A batch of results is one
  ``executemany`` in one transaction: the cost of a commit is paid per batch, not per item.
- the **reader** runs `get_job`, `list_jobs` and `items`. In WAL mode a reader sees the last
  committed state without waiting for the writer, and it has its own thread, so a progress read
  never queues behind a batch of results.

The event loop only hands work to these threads and awaits it. Why threads over aiosqlite:
see ``docs/decisions.md``.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from itertools import groupby
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ... import _clock
from .. import latency as hist
from ..errors import InvalidJob, JobNotFound, JobStateError, StoreError, StoreUnavailable
from ..model import TERMINAL, Claim, ClaimedItem, admit, budget_options, reopens
from .sqlite_read import Reader, job_from_row
from .sqlite_schema import connect, migrate, probe, queries

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterable, Sequence

    from ..model import ItemResult, ItemState, Job, JobItem, JobStatus, NewJob

__all__ = ["SqliteStore"]

T = TypeVar("T")
Q = queries()
#: The SQLite result codes of a store that passes (busy or locked by another process, out of
#: disk or memory, I/O errors, a file that cannot be opened or written now).
_PASSING = frozenset(
    {
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_NOMEM,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_INTERRUPT,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_PROTOCOL,
    }
)


class _Tx:
    """``with _Tx(conn):`` one write transaction, rolled back on any error."""

    __slots__ = ("_conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self._conn.execute("BEGIN IMMEDIATE")
        return self._conn

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            # SQLite itself rolls back on some errors (a full disk, an I/O error): a ROLLBACK
            # then fails, and its error would hide the one that says what went wrong.
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            return
        try:
            self._conn.execute("COMMIT")
        except sqlite3.Error:
            # A commit that failed (disk full) leaves the transaction open: without this
            # rollback every later BEGIN would fail, and the store would stay broken after
            # room is made.
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise


class _Writer:
    """The write side: plain synchronous methods, run only on the writer thread."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def reclaim(self) -> bool:
        """Checkpoint the write-ahead log and truncate it; whether that was done whole.

        It is not while a read holds the log (busy), or while the disk has no room for the
        database to take the log's pages.
        """
        try:
            busy, _, _ = self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.Error:
            return False
        return bool(busy == 0)

    def _get(self, job_id: str) -> Job:
        row = self.conn.execute(Q["get_job"], {"id": job_id}).fetchone()
        if row is None:
            raise JobNotFound(job_id)
        return job_from_row(row)

    def _settle(self, job_id: str, now: float) -> None:
        self.conn.execute(Q["settle_job"], {"job": job_id, "now": now})

    def _admit(self, tenant: str, max_active_jobs: int) -> None:
        # Run in a write transaction: no other writer, of any process, runs until its commit,
        # so the count and the write that makes a job active are one step.
        active = self.conn.execute(Q["unfinished_of_tenant"], {"tenant": tenant}).fetchone()[0]
        admit(tenant, active, max_active_jobs)

    def create_job(
        self, job: NewJob, items: Iterable[str], now: float, max_active_jobs: int | None
    ) -> Job:
        job_id = job.id
        count = 0

        def rows() -> Iterable[tuple[str, int, str]]:
            nonlocal count
            for index, text in enumerate(items):
                count = index + 1
                yield job_id, index, text

        with _Tx(self.conn) as c:
            key = job.idempotency_key
            if key is not None:
                found = c.execute(Q["job_by_key"], {"tenant": job.tenant, "key": key}).fetchone()
                if found is not None:
                    return self._get(found[0])
            if max_active_jobs is not None:
                self._admit(job.tenant, max_active_jobs)
            params = {
                "id": job_id,
                "task": job.task,
                "options": job.options.to_json(),
                "now": now,
                "tenant": job.tenant,
                "key": key,
                "hash": job.request_hash,
            }
            c.execute(Q["insert_job"], params)
            c.executemany(Q["insert_item"], rows())
            if count == 0:
                msg = "the job has no items: pass at least one item"
                raise InvalidJob(msg)
            c.execute(Q["set_total"], {"n": count, "id": job_id})
            return self._get(job_id)

    def claim(
        self,
        worker: str,
        limit: int,
        until: float,
        job_id: str | None,
        now: float,
        tasks: str | None = None,
    ) -> Claim | None:
        with _Tx(self.conn) as c:
            if job_id is None:
                found = c.execute(Q["next_job"], {"tasks": tasks, "worker": worker}).fetchone()
            else:
                where = {"id": job_id, "tasks": tasks, "worker": worker}
                found = c.execute(Q["this_job"], where).fetchone()
            if found is None:
                return None
            job = found[0]
            params = {"worker": worker, "now": now, "job": job, "limit": limit}
            rows = c.execute(Q["claim_items"], params).fetchall()
            rows.sort()
            c.execute(Q["count_claim"], {"n": len(rows), "now": now, "job": job})
            c.execute(Q["hold_lease"], {"worker": worker, "until": until})
            items = [ClaimedItem(job, idx, text, attempts) for idx, text, attempts in rows]
            return Claim(self._get(job), items)

    def renew(self, worker: str, until: float) -> bool:
        with _Tx(self.conn) as c:
            return c.execute(Q["renew_lease"], {"worker": worker, "until": until}).rowcount == 1

    def record(self, worker: str, results: Sequence[ItemResult], now: float) -> int:
        recorded = 0
        ordered = sorted(results, key=lambda r: r.job_id)
        with _Tx(self.conn) as c:
            for job_id, group in groupby(ordered, key=lambda r: r.job_id):
                batch = list(group)
                done = self._record_job(c, worker, job_id, batch, now)
                recorded += done
                if done:
                    self._settle(job_id, now)
        return recorded

    def _record_job(
        self, c: sqlite3.Connection, worker: str, job_id: str, batch: list[ItemResult], now: float
    ) -> int:
        rows = [
            (r.state, r.attempts, r.latency_s, r.result_json, r.error_type, r.error_message, now,
             job_id, r.index, worker)
            for r in batch
        ]  # fmt: skip
        c.execute("SAVEPOINT batch")
        if c.executemany(Q["record_item"], rows).rowcount == len(rows):
            c.execute("RELEASE batch")
            kept = batch
        else:
            # Some items are no longer this worker's (its lease lapsed): redo one by one, to
            # count exactly the ones that were recorded.
            c.execute("ROLLBACK TO batch")
            c.execute("RELEASE batch")
            kept = [r for r, row in zip(batch, rows, strict=True) if c.execute(
                Q["record_item"], row).rowcount]  # fmt: skip
        if not kept:
            return 0
        tally = {"succeeded": 0, "failed": 0, "cancelled": 0}
        latencies: list[float] = []
        for r in kept:
            tally[r.state] += 1
            if r.latency_s is not None and r.state != "cancelled":
                latencies.append(r.latency_s)
        before = c.execute(Q["latency_hist_of"], {"job": job_id}).fetchone()[0]
        params = {
            "n": len(kept),
            "job": job_id,
            "latency": sum(latencies),
            "hist": hist.dumps(hist.merge(hist.loads(before), latencies)),
            **tally,
        }
        c.execute(Q["count_settled"], params)
        return len(kept)

    def started(self, worker: str, pairs: Sequence[tuple[str, int]]) -> int:
        rows = [(job_id, index, worker) for job_id, index in pairs]
        with _Tx(self.conn) as c:
            return int(c.executemany(Q["count_started"], rows).rowcount)

    def release(self, worker: str, pairs: Sequence[tuple[str, int]] | None, now: float) -> int:
        with _Tx(self.conn) as c:
            return self._release(c, worker, pairs, now)

    def _release(
        self,
        c: sqlite3.Connection,
        worker: str,
        pairs: Sequence[tuple[str, int]] | None,
        now: float,
    ) -> int:
        by_job: dict[str, list[int]] = {}
        if pairs is None:
            c.execute(Q["drop_lease"], {"worker": worker})
            for job_id, _status in c.execute(Q["jobs_with_running"]).fetchall():
                args = {"job": job_id, "worker": worker}
                rows = c.execute(Q["running_of_worker"], args).fetchall()
                if rows:
                    by_job[job_id] = [r[0] for r in rows]
        else:
            for job_id, index in pairs:
                by_job.setdefault(job_id, []).append(index)
        moved = 0
        for job_id, indexes in by_job.items():
            found = c.execute(Q["status_of"], {"job": job_id}).fetchone()
            if found is None:
                continue
            if found[0] == "cancelling":
                rows = [(now, job_id, i, worker) for i in indexes]
                n = c.executemany(Q["unrun_to_cancelled"], rows).rowcount
                counts = {"pending": 0, "cancelled": n}
            else:
                n = c.executemany(
                    Q["unrun_to_pending"], [(job_id, i, worker) for i in indexes]
                ).rowcount
                counts = {"pending": n, "cancelled": 0}
            if n:
                c.execute(Q["count_unrun"], {"n": n, "job": job_id, **counts})
                self._settle(job_id, now)
                moved += n
        return moved

    def requeue_expired(self, now: float) -> int:
        with _Tx(self.conn) as c:
            moved = 0
            for (worker,) in c.execute(Q["expired_workers"], {"now": now}).fetchall():
                # Attempts already count (`started`): claimed, never started, count none.
                moved += self._release(c, worker, None, now)
            return moved

    def request_cancel(self, job_id: str, now: float) -> Job:
        with _Tx(self.conn) as c:
            job = self._get(job_id)
            if job.status in TERMINAL:
                return job
            n = c.execute(Q["cancel_pending"], {"job": job_id, "now": now}).rowcount
            c.execute(Q["count_cancel"], {"n": n, "job": job_id})
            self._settle(job_id, now)
            return self._get(job_id)

    def retry_failed(self, job_id: str, now: float, max_active_jobs: int | None) -> int:
        with _Tx(self.conn) as c:
            job = self._get(job_id)
            if job.status in {"cancelled", "cancelling", "failed"}:
                msg = (
                    f"job {job_id} is {job.status}: only a queued, running or completed job"
                    " can retry its failed items"
                )
                raise JobStateError(msg)
            if max_active_jobs is not None and reopens(job):
                self._admit(job.tenant, max_active_jobs)
            rows = c.execute(Q["failed_latencies"], {"job": job_id}).fetchall()
            latencies = [r[0] for r in rows]
            n = c.execute(Q["retry_failed_items"], {"job": job_id}).rowcount
            if n:
                left = hist.merge(job.latency_hist, latencies, sign=-1)
                params = {"n": n, "job": job_id, "latency": sum(latencies), "now": now}
                c.execute(Q["count_retry"], {**params, "hist": hist.dumps(left)})
            return int(n)

    def set_budget(self, job_id: str, max_cost_usd: float | None) -> Job:
        with _Tx(self.conn) as c:
            options = budget_options(self._get(job_id), max_cost_usd)
            c.execute(Q["set_options"], {"job": job_id, "options": options.to_json()})
            return self._get(job_id)

    def fail_job(self, job_id: str, error: str, now: float) -> Job:
        with _Tx(self.conn) as c:
            self._get(job_id)
            c.execute(Q["fail_items"], {"job": job_id, "now": now})
            c.execute(Q["fail_job"], {"job": job_id, "error": error, "now": now})
            return self._get(job_id)

    def set_progress(self, job_id: str, inflight: float, step: str | None) -> None:
        with _Tx(self.conn) as c:
            c.execute(Q["set_progress"], {"job": job_id, "inflight": inflight, "step": step})


def _check_place(path: Path, *, create: bool) -> None:
    """`StoreError` naming the path and the fix, before SQLite says "unable to open"."""
    if path.is_dir():
        msg = f"the job store {str(path)!r} is a directory: pass a file's path, e.g. sqlite:///jobs.db"
        raise StoreError(msg)
    if path.exists():
        return
    if not create:
        msg = (
            f"no job store at {str(path)!r}: check the path (--store or $CONVEYOR_STORE);"
            " a store is created by `conveyor jobs submit`, `conveyor worker` or `conveyor serve`"
        )
        raise StoreError(msg)
    folder = path.parent
    if not folder.is_dir():
        msg = (
            f"cannot create the job store {str(path)!r}: the folder {str(folder)!r} does not"
            " exist; create it first, or pass a path in an existing folder"
        )
        raise StoreError(msg)


class SqliteStore:
    """A `Store` in one SQLite file (created if missing; migrated to the current schema).

    Raises `StoreError` at once, having written nothing, for a file that is not a Conveyor
    store or comes from a newer Conveyor.

    Args:
        path: the database file.
        clock: returns Unix seconds (default: `conveyor._clock.wall`); read on the event loop.
    """

    def __init__(
        self, path: str | Path, *, clock: Callable[[], float] = _clock.wall, create: bool = True
    ) -> None:
        self.path = Path(path)
        self._clock = clock
        _check_place(self.path, create=create)
        probe(self.path)
        try:
            write_conn = connect(self.path)
        except sqlite3.Error as exc:  # unwritable folder, file system errors
            msg = f"cannot open the job store {str(self.path)!r}: {exc}; check its permissions"
            raise StoreError(msg) from exc
        try:
            migrate(write_conn)
            read_conn = connect(self.path, read_only=True)
        except BaseException:
            write_conn.close()
            raise
        read_conn.execute("PRAGMA query_only = 1")
        self._writer = _Writer(write_conn)
        self._reader = Reader(read_conn)
        self._write_pool = ThreadPoolExecutor(1, thread_name_prefix="conveyor-store-writer")
        self._read_pool = ThreadPoolExecutor(1, thread_name_prefix="conveyor-store-reader")
        self._closed = False
        self._was_full = False  # a write failed on a full disk: reclaim at the next that works

    async def _write(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(self._write_pool, partial(fn, *args))
        except sqlite3.OperationalError as exc:
            unavailable = self._unavailable(exc)
            if unavailable is None:
                raise
            if "full" in str(exc):
                self._was_full = True
                await loop.run_in_executor(self._write_pool, self._writer.reclaim)
            raise unavailable from exc
        if self._was_full:
            # The write-ahead log only shrinks at a checkpoint, which runs once it passes
            # ~4 MB: on a small disk it can be what filled it, and it would fill the room just
            # made again. The writes that have room fold it into the database, until done.
            done = await loop.run_in_executor(self._write_pool, self._writer.reclaim)
            self._was_full = not done
        return result

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._read_pool, partial(fn, *args))
        except sqlite3.OperationalError as exc:
            raise self._unavailable(exc) or exc from exc

    def _unavailable(self, exc: sqlite3.OperationalError) -> StoreUnavailable | None:
        """`StoreUnavailable` for what passes (disk full, locked, I/O errors); else None.

        Every such error rolled its transaction back: nothing of the call was written.
        """
        code = getattr(exc, "sqlite_errorcode", None)
        if code is not None:
            # SQLITE_ERROR (1) is a query's fault whatever its text ("too many SQL variables",
            # "no such column", ...): a bug, raised, not retried as an outage forever.
            if code & 0xFF not in _PASSING:
                return None
        else:  # raised by hand, without its code (tests): by its text
            text = str(exc)
            if text.startswith(("no such", "near ", "table ")) or "syntax error" in text:
                return None
        return StoreUnavailable(repr(str(self.path)), exc)

    async def create_job(
        self, job: NewJob, items: Iterable[str], *, max_active_jobs: int | None = None
    ) -> Job:
        """Create the job with all its items in one transaction (the limit checked in it)."""
        return await self._write(
            self._writer.create_job, job, items, self._clock(), max_active_jobs
        )

    async def get_job(self, job_id: str) -> Job | None:
        """Read the job on the reader thread."""
        return await self._read(self._reader.get_job, job_id)

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
        filters = {"status": status, "limit": limit, "tenant": tenant, "task": task}
        return await self._read(self._reader.list_jobs, {**filters, "before": before})

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
        names = None if tasks is None else json.dumps(sorted(tasks))
        return await self._write(
            self._writer.claim, worker_id, limit, now + lease_s, job_id, now, names
        )

    async def started(self, worker_id: str, items: Sequence[tuple[str, int]]) -> int:
        """Count an attempt for each of the worker's running `items`."""
        if not items:
            return 0
        return await self._write(self._writer.started, worker_id, items)

    async def renew(self, worker_id: str, *, lease_s: float) -> bool:
        """Extend the lease if still held."""
        return await self._write(self._writer.renew, worker_id, self._clock() + lease_s)

    async def record(self, worker_id: str, results: Sequence[ItemResult]) -> int:
        """Settle a batch in one transaction."""
        if not results:
            return 0
        return await self._write(self._writer.record, worker_id, results, self._clock())

    async def release(self, worker_id: str, items: Sequence[tuple[str, int]] | None = None) -> int:
        """Put running items back."""
        return await self._write(self._writer.release, worker_id, items, self._clock())

    async def requeue_expired(self) -> int:
        """Release the items of lapsed leases."""
        return await self._write(self._writer.requeue_expired, self._clock())

    async def request_cancel(self, job_id: str) -> Job:
        """Cancel the job."""
        return await self._write(self._writer.request_cancel, job_id, self._clock())

    async def retry_failed(self, job_id: str, *, max_active_jobs: int | None = None) -> int:
        """Failed items back to pending (a completed job reopened within the limit)."""
        return await self._write(self._writer.retry_failed, job_id, self._clock(), max_active_jobs)

    async def set_budget(self, job_id: str, max_cost_usd: float | None) -> Job:
        """Set the job's spend budget."""
        return await self._write(self._writer.set_budget, job_id, max_cost_usd)

    async def fail_job(self, job_id: str, error: str) -> Job:
        """The job could not run."""
        return await self._write(self._writer.fail_job, job_id, error, self._clock())

    async def set_progress(self, job_id: str, *, inflight: float, step: str | None) -> None:
        """Publish in-flight progress and the step."""
        await self._write(self._writer.set_progress, job_id, inflight, step)

    async def items(
        self,
        job_id: str,
        *,
        state: ItemState | None = None,
        after: int = -1,
        limit: int = 1000,
    ) -> list[JobItem]:
        """A page of items, on the reader thread."""
        return await self._read(self._reader.items, job_id, state, after, limit)

    async def close(self) -> None:
        """Finish queued work, then close both connections."""
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._shutdown)

    def _shutdown(self) -> None:
        self._write_pool.shutdown(wait=True)
        self._read_pool.shutdown(wait=True)
        self._writer.conn.close()
        self._reader.conn.close()
