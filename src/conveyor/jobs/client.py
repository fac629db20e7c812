"""`Jobs`: submit jobs and follow them, from a web app, a script or the command line.

>>> jobs = conveyor.Jobs("sqlite:///jobs.db", app=app)  # doctest: +SKIP
>>> job = await jobs.submit("analyze", emails, concurrency=20)  # doctest: +SKIP
>>> async for snapshot in jobs.watch(job.id):  # doctest: +SKIP
...     print(f"{snapshot.progress:.0f}% {snapshot.step or ''}")
"""

from __future__ import annotations

import asyncio
import itertools
import json
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Unpack

from .. import _clock
from .._closing import Closing
from .._urls import shown_url
from ..errors import ConfigError
from .errors import InvalidJob, JobNotFound
from .file_model import FileItems
from .ids import new_id
from .model import JobOptions, NewJob
from .stores.memory import MemoryStore
from .stores.sqlite import SqliteStore
from .tracing import carry_trace

if TYPE_CHECKING:
    import builtins
    from collections.abc import AsyncIterator, Callable, Iterable

    from .app import App
    from .model import ItemState, Job, JobItem
    from .store import JobFilters, Store

__all__ = ["DEFAULT_MAX_ITEM_BYTES", "Jobs", "open_store"]

#: The largest item accepted at submit, as JSON: 1 MiB.
DEFAULT_MAX_ITEM_BYTES = 1 << 20
ITEM_STATES = frozenset({"pending", "running", "succeeded", "failed", "cancelled"})


def open_store(url: str | Store, *, create: bool = True) -> Store:
    """Open a store from its URL: ``sqlite:///jobs.db`` (or a path), ``postgresql://``, ``memory:``.

    ``postgresql://user@host/db?schema=conveyor`` serves many workers and service instances.
    With ``create=False`` a SQLite file that does not exist raises `StoreError` instead of
    being created (for commands that only read).

    A `Store` object is returned as it is.
    """
    if not isinstance(url, str):
        return url
    if url in {"memory:", "memory://"}:
        return MemoryStore()
    if url.startswith("sqlite://"):
        path = url.removeprefix("sqlite://")
        # sqlite:///jobs.db is relative (like SQLAlchemy), sqlite:////abs/jobs.db absolute.
        path = path.removeprefix("/")
        if not path:
            msg = f"store url {url!r} has no file: use sqlite:///jobs.db (relative) or sqlite:////abs/jobs.db"
            raise ConfigError(msg)
        return SqliteStore(path, create=create)
    if url.startswith(("postgresql://", "postgres://")):
        from .stores.postgres import PostgresStore  # noqa: PLC0415 - asyncpg only when used

        return PostgresStore(url)
    if "://" in url:
        scheme = url.split("://", 1)[0]
        msg = (
            f"store url {shown_url(url)!r}: the {scheme!r} store is not available; use"
            " sqlite:///jobs.db (the default), postgresql://host/db or memory:"
        )
        raise ConfigError(msg)
    return SqliteStore(url, create=create)


class Jobs(Closing):
    """Submit, follow, cancel and retry jobs in a store; every call is async.

    Args:
        store: a store URL (``sqlite:///jobs.db``, a path, ``memory:``) or a `Store`.
        app: the `App` whose tasks jobs run; when given, `submit` checks the task name and
            each item's input before anything is written. Without it, a job for a task no
            worker has waits, queued, until a worker with that task starts.
        max_item_bytes: the largest item accepted, as JSON.
    """

    def __init__(
        self,
        store: str | Store = "sqlite:///conveyor-jobs.db",
        *,
        app: App | None = None,
        max_item_bytes: int = DEFAULT_MAX_ITEM_BYTES,
    ) -> None:
        if isinstance(max_item_bytes, bool) or not isinstance(max_item_bytes, int):
            msg = f"max_item_bytes={max_item_bytes!r}: pass a whole number of bytes"
            raise ConfigError(msg)
        self.store = open_store(store)
        self.app = app
        self.max_item_bytes = max_item_bytes

    async def close(self) -> None:
        """Close the store."""
        await self.store.close()

    # -- submitting ------------------------------------------------------------------------

    async def submit(
        self,
        task: str,
        items: Iterable[Any] | FileItems,
        *,
        options: JobOptions | None = None,
        concurrency: int | None = None,
        attempts: int | None = None,
        timeout_s: float | None = None,
        limiters: Iterable[str] = (),
        tenant: str = "default",
        idempotency_key: str | None = None,
        request_hash: str | None = None,
        max_active_jobs: int | None = None,
    ) -> Job:
        """Create a job running `task` once per item; return it, ``queued``.

        The items are checked and written in one transaction: an unknown task, an item that
        is not JSON, too large, or refused by the task's input check, or no items at all
        raise `InvalidJob` (naming the item), and nothing is written. Pass `options`, or
        the options one by one (see `JobOptions`).

        `items` may be the lines of a file in the store (`FileItems`, a file of `tenant`'s):
        they are read in the transaction that creates the job, each turned into its item by
        ``items.item`` then checked as any item; a line that cannot be is refused, as an item.

        `tenant` owns the job. With an `idempotency_key`, a second submit with the same
        tenant and key returns the first job (as it is now) and reads none of `items`; pass
        a `request_hash` (of what was asked) to tell a replay from a key reused for another
        request: the returned job's ``request_hash`` is the first request's.

        With `max_active_jobs`, the job is refused (`TooManyActiveJobs`, nothing written) if
        `tenant` already has that many queued, running or cancelling jobs; the store counts
        them in the transaction that creates the job, so submits racing each other never pass
        the limit. A replay of an `idempotency_key` creates nothing and is never refused.
        """
        if not isinstance(task, str) or not task:
            msg = f"task={task!r}: pass the name of a registered task, e.g. 'analyze'"
            raise InvalidJob(msg)
        from_file = isinstance(items, FileItems)
        if not from_file and (
            isinstance(items, str | bytes | dict) or not hasattr(items, "__iter__")
        ):
            msg = f"items is a {type(items).__name__}: pass a list (or any iterable) of items"
            raise InvalidJob(msg)
        given: dict[str, Any] = {
            k: v for k, v in (("concurrency", concurrency), ("attempts", attempts)) if v is not None
        }
        if options is not None and (given or timeout_s is not None or limiters):
            msg = "pass either options=JobOptions(...) or the options one by one, not both"
            raise InvalidJob(msg)
        opts = options or JobOptions(timeout_s=timeout_s, limiters=tuple(limiters), **given)
        opts = carry_trace(opts)  # the workers' spans continue the trace current here
        checker = None
        if self.app is not None:
            found = self.app.get_task(task)
            if found is None:
                known = ", ".join(self.app.task_names) or "none"
                msg = f"unknown task {task!r}: the app has {known}; register it with @app.task"
                raise InvalidJob(msg)
            self.app.resolve_limiters((*found.limiters, *opts.limiters))
            checker = found.check_item
        if idempotency_key is not None and not (
            isinstance(idempotency_key, str) and 0 < len(idempotency_key) <= 255
        ):
            msg = f"idempotency_key={idempotency_key!r}: pass a string of 1 to 255 characters"
            raise InvalidJob(msg)
        if max_active_jobs is not None and (
            isinstance(max_active_jobs, bool)
            or not isinstance(max_active_jobs, int)
            or max_active_jobs < 1
        ):
            msg = (
                f"max_active_jobs={max_active_jobs!r}: pass a whole number >= 1, or None for"
                " no limit"
            )
            raise InvalidJob(msg)
        now = _clock.wall()
        new = NewJob(
            id=new_id(now),
            task=task,
            options=opts,
            created_at=now,
            tenant=tenant,
            idempotency_key=idempotency_key,
            request_hash=request_hash,
        )
        encoded: Iterable[str] | FileItems
        if isinstance(items, FileItems):
            encoded = replace(items, item=self._file_encoder(items.item, checker))
        else:
            encoded = (self._encode(i, item, checker) for i, item in enumerate(items))
        return await self.store.create_job(new, encoded, max_active_jobs=max_active_jobs)

    def _file_encoder(self, parse: Callable[[int, bytes], Any], checker: Any) -> Callable[..., str]:
        """`parse` of a file's lines, each item then checked and encoded, counted from 0."""
        counter = itertools.count()

        def encode(number: int, line: bytes) -> str:
            return self._encode(next(counter), parse(number, line), checker)

        return encode

    def _encode(self, index: int, item: Any, checker: Any) -> str:
        """The item's JSON text, after the task's check; `InvalidJob` naming it otherwise."""
        limit = self.max_item_bytes
        if checker is not None:
            checker(index, item)
        try:
            # allow_nan=False: NaN and Infinity are not JSON (they would break every read).
            text = json.dumps(item, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
            # A lone surrogate ("\ud800") is not text: it cannot be stored as UTF-8.
            text.encode()
        except (TypeError, ValueError) as exc:
            msg = (
                f"item {index} is not JSON ({exc}): items are stored as JSON (finite"
                " numbers, valid Unicode text)"
            )
            raise InvalidJob(msg) from exc
        if len(text) > limit:  # characters: a lower bound on bytes, then exact below
            size = len(text.encode())
            if size > limit:
                msg = (
                    f"item {index} is {size:,} bytes of JSON, over max_item_bytes={limit:,}:"
                    " store large payloads elsewhere and pass a reference (a URL, a key)"
                )
                raise InvalidJob(msg)
        return text

    # -- reading ---------------------------------------------------------------------------

    async def get(self, job_id: str) -> Job:
        """The job's current snapshot; `JobNotFound` if there is none."""
        job = await self.store.get_job(job_id)
        if job is None:
            raise JobNotFound(job_id)
        return job

    async def list(self, **filters: Unpack[JobFilters]) -> builtins.list[Job]:
        """Jobs, newest first, filtered by `status`, `tenant`, `task`, at most `limit` (50).

        `before` (a job id) pages on from the previous page's last (see `JobFilters`).
        """
        return await self.store.list_jobs(**filters)

    async def watch(self, job_id: str, *, interval_s: float = 0.5) -> AsyncIterator[Job]:
        """Yield a snapshot now and whenever the job changes; end after it is done."""
        last: Job | None = None
        while True:
            job = await self.get(job_id)
            if job != last:
                yield job
                last = job
            if job.done:
                return
            await asyncio.sleep(interval_s)

    async def wait(
        self, job_id: str, *, interval_s: float = 0.5, timeout_s: float | None = None
    ) -> Job:
        """Wait until the job is done and return it (`TimeoutError` after `timeout_s`)."""
        async with asyncio.timeout(timeout_s):
            async for job in self.watch(job_id, interval_s=interval_s):
                if job.done:
                    return job
        raise AssertionError("unreachable: watch ends with a done job")  # pragma: no cover

    async def results(
        self, job_id: str, *, state: ItemState | None = None, page_size: int = 1000
    ) -> AsyncIterator[JobItem]:
        """Every item (or those in `state`) in index order, read a page at a time."""
        if state is not None and state not in ITEM_STATES:
            msg = f"state={state!r}: pass one of {', '.join(sorted(ITEM_STATES))}, or None"
            raise ConfigError(msg)
        after = -1
        while True:
            page = await self.store.items(job_id, state=state, after=after, limit=page_size)
            for item in page:
                yield item
            if len(page) < page_size:
                return
            after = page[-1].index

    # -- changing --------------------------------------------------------------------------

    async def cancel(self, job_id: str) -> Job:
        """Cancel the job: nothing new starts, in-flight items are cancelled by their worker."""
        return await self.store.request_cancel(job_id)

    async def retry_failed(self, job_id: str, *, max_active_jobs: int | None = None) -> int:
        """Run the job's failed items again, under the same job; return how many.

        With `max_active_jobs`, reopening a completed or failed job is refused (`TooManyActiveJobs`,
        nothing changed) when its tenant already has that many other active jobs.
        """
        return await self.store.retry_failed(job_id, max_active_jobs=max_active_jobs)

    async def set_budget(self, job_id: str, max_cost_usd: float | None) -> Job:
        """Set the job's spend budget in US dollars (``None``: none); return the job.

        A job that reached its budget keeps its items pending: raise the budget and a worker
        starts them again, under the same job. Raises `JobNotFound`, `ConfigError` for a
        budget not > 0, `JobStateError` for a job cancelled, being cancelled or that could not run.
        """
        return await self.store.set_budget(job_id, max_cost_usd)
