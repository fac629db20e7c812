"""The PostgreSQL store's connections and read side: `PostgresReader`, and statement helpers.

`conveyor.jobs.stores.postgres.PostgresStore` is a `PostgresReader` that also writes: the pool,
the transactions, ``LISTEN`` and the reads of jobs and items live here, the claims, results
and job changes there. The SQL of both is in the named ``.sql`` files (`postgres_schema`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, TypeVar

from ..._urls import shown_url
from ..errors import JobNotFound, StoreError
from .postgres_listen import Listener
from .postgres_schema import create_schema, migrate, queries, split_url
from .sqlite_read import item_from_row, job_from_row

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ..model import ItemState, Job, JobItem, JobStatus

__all__ = ["Conn", "PostgresReader", "execute", "fetch", "fetchrow", "fetchval", "import_asyncpg"]

logger = logging.getLogger("conveyor.jobs")
T = TypeVar("T")
Q = queries()
#: A transaction that deadlocked (PostgreSQL aborts one side) is run again, this many times.
DEADLOCK_TRIES = 5

Conn = Any  # an asyncpg connection (typed loosely: asyncpg ships no stubs)


def import_asyncpg() -> Any:
    """The asyncpg module, or `StoreError` saying how to install it."""
    try:
        import asyncpg  # noqa: PLC0415 - the driver only when a PostgreSQL store is used
    except ImportError:  # pragma: no cover - depends on the install
        msg = "the PostgreSQL store needs the asyncpg driver: pip install 'conveyor[postgres]'"
        raise StoreError(msg) from None
    return asyncpg


class PostgresReader:
    """The connections of a PostgreSQL store, its notifications and its reads.

    Made and used as `PostgresStore` (which see for the arguments); this half never writes.
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
        #: The URL as it may be shown (its password taken out, `conveyor._urls.shown_url`).
        self.url = shown_url(url)
        self._dsn, self.schema = split_url(url)
        self._clock = clock
        self._min_size = min_size
        self._max_size = max_size
        self._migrate = migrate
        self._pool: Any = None
        self._opening: asyncio.Lock | None = None
        self._listener = Listener(self._connect_one)
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
        asyncpg = import_asyncpg()
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
                asyncpg = import_asyncpg()
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
            return await migrate(conn, where=f"the database of {shown_url(self._dsn)}")
        finally:
            await conn.close()

    def _now(self) -> float | None:
        return None if self._clock is None else self._clock()

    async def _tx(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        """Run `fn(conn)` in one transaction; again if PostgreSQL broke a deadlock with it."""
        pool = await self._pool_or_open()
        asyncpg = import_asyncpg()
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
        items. Delivered at the commit of the change; one listening connection per store, kept
        open (`conveyor.jobs.stores.postgres_listen`): after it was lost and opened again,
        every callback is called once with ``""`` (anything may have changed meanwhile).
        """
        await self._pool_or_open()
        await self._listener.listen(f"{self.channel_prefix}.conveyor_{channel}", callback)

    # -- reads ----------------------------------------------------------------------------

    async def _get(self, c: Conn, job_id: str) -> Job:
        row = await fetchrow(c, "get_job", id=job_id)
        if row is None:
            raise JobNotFound(job_id)
        return job_from_row(tuple(row))

    async def get_job(self, job_id: str) -> Job | None:
        """The job, or None."""

        async def read(c: Conn) -> Job | None:
            row = await fetchrow(c, "get_job", id=job_id)
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
            rows = await fetch(
                c, "list_jobs", status=status, limit=limit, tenant=tenant, task=task, before=before
            )
            return [job_from_row(tuple(r)) for r in rows]

        return await self._read(read)

    async def any_active(self) -> bool:
        """Whether any job is queued, running or being cancelled (one query)."""
        return bool(await self._read(lambda c: fetchval(c, "any_active")))

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
            if await fetchrow(c, "get_job", id=job_id) is None:
                raise JobNotFound(job_id)
            if state is None:
                rows = await fetch(c, "items_page", job=job_id, after=after, limit=limit)
            else:
                rows = await fetch(
                    c, "items_page_by_state", job=job_id, state=state, after=after, limit=limit
                )
            return [item_from_row(job_id, tuple(r)) for r in rows]

        return await self._read(read)

    async def close(self) -> None:
        """Close the listening connection and the pool."""
        if self._closed:
            return
        self._closed = True
        await self._listener.close()
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    def terminate(self) -> None:
        """Drop every connection at once, without a loop (for tests whose loop has ended)."""
        self._closed = True
        self._listener.terminate()
        if self._pool is not None:
            self._pool.terminate()
            self._pool = None


# -- statement helpers (named parameters in, asyncpg's positional ones out) ----------------


async def execute(c: Conn, name: str, **params: Any) -> str:
    """Run query `name` with named `params`; its command status (``UPDATE 3``)."""
    q = Q[name]
    return str(await c.execute(q.sql, *q.args(params)))


async def fetch(c: Conn, name: str, **params: Any) -> list[Any]:
    """Run query `name` with named `params`; its rows."""
    q = Q[name]
    return list(await c.fetch(q.sql, *q.args(params)))


async def fetchrow(c: Conn, name: str, **params: Any) -> Any:
    """Run query `name` with named `params`; its first row, or None."""
    q = Q[name]
    return await c.fetchrow(q.sql, *q.args(params))


async def fetchval(c: Conn, name: str, **params: Any) -> Any:
    """Run query `name` with named `params`; the first column of its first row."""
    q = Q[name]
    return await c.fetchval(q.sql, *q.args(params))
