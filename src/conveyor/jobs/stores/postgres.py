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

from typing import TYPE_CHECKING, Any, Unpack

from .manager import JobStore
from .postgres_connector import PostgresConnector, PostgresOptions

if TYPE_CHECKING:
    from collections.abc import Callable

    from .connector import Import
    from .postgres_connection import Conn
    from .postgres_listen import Listener

__all__ = ["PostgresStore"]


class PostgresStore(JobStore):
    """A `Store` in PostgreSQL (tables created or migrated on first use).

    The pool connects on the first call, so the store can be made outside an event loop.
    Raises `StoreError` on that first call for a database whose Conveyor schema is newer
    than this Conveyor (nothing is written).

    Args:
        url: ``postgresql://user:password@host:port/db``, optionally ``?schema=name`` to keep
            Conveyor's tables in their own schema (created if missing).
        clock: returns Unix seconds; ``None`` (default) uses the database's clock.
        min_size, max_size: the connection pool's bounds (default 1 and 4).
        migrate: bring the schema up to date on first use (``False``: refuse an old schema,
            and run ``conveyor db upgrade`` instead).
        timeout_s: the longest a connection, a statement or a wait for a pooled connection
            may take (then `StoreUnavailable`); default 10.

    The keyword arguments are `PostgresOptions` (every one optional).
    """

    def __init__(self, url: str, **options: Unpack[PostgresOptions]) -> None:
        self._pg = PostgresConnector(url, **options)
        super().__init__(self._pg)
        #: The URL as it may be shown (its password taken out, `conveyor._urls.shown_url`).
        self.url = self._pg.url
        #: The schema the tables live in (None: the connection's default).
        self.schema = self._pg.schema

    @property
    def channel_prefix(self) -> str:
        """The notification channels' prefix: the schema the tables live in."""
        return self._pg.channel_prefix

    async def listen(self, channel: str, callback: Callable[[str], None]) -> None:
        """Call ``callback(job_id)`` on each notification of `channel` (``"jobs"``, ``"work"``).

        See `PostgresConnector.listen`.
        """
        await self._pg.listen(channel, callback)

    async def upgrade(
        self, *, only_check: bool = False, then: Import | None = None
    ) -> tuple[int, int]:
        """Create the schema or migrate it to the latest version; ``(before, after)``.

        With `only_check`, raise `StoreError` unless the schema is already current. `then`
        (an import into the new tables) runs in the transaction of the last migration, or
        of its own if the schema was current: if it fails, the version stays as it was.
        """
        return await self._pg.upgrade(only_check=only_check, then=then)

    async def any_active(self) -> bool:
        """Whether any job is queued, running or being cancelled (one query)."""
        return bool(await self._pg.read(lambda c: c.fetchval("any_active")))

    def terminate(self) -> None:
        """Drop every connection at once, without a loop (for tests whose loop has ended)."""
        self._pg.terminate()

    # The connector's insides, as tests reach them on the store.

    @property
    def _dsn(self) -> str:
        return self._pg._dsn  # noqa: SLF001

    @property
    def _listener(self) -> Listener:
        return self._pg._listener  # noqa: SLF001

    async def _connect_one(self) -> Conn:
        return await self._pg._connect_one()  # noqa: SLF001

    async def _pool_or_open(self) -> Any:
        return await self._pg._pool_or_open()  # noqa: SLF001
