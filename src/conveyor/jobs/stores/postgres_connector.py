"""The PostgreSQL store's `Connector`: the pool, transactions, ``LISTEN``, and outages.

`conveyor.jobs.stores.postgres.PostgresStore` is the job store over a `PostgresConnector`. The
connector opens (and migrates) on first use, runs each piece of work in one transaction on a
pooled connection (again if PostgreSQL broke a deadlock with it), tells an outage
(`StoreUnavailable`) from a bug, and hands notifications to callbacks. The statements are the
named queries of ``sql/common/`` and ``sql/postgres/`` (`postgres_schema`), run by `PgConnection`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar

from ..._urls import hide_secrets, shown_url
from ..errors import StoreError, StoreUnavailable
from .postgres_connection import Conn, PgConnection
from .postgres_listen import Listener
from .postgres_schema import create_schema, migrate, split_url

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine

    from .connector import Connection, Import

__all__ = ["PostgresConnector", "PostgresOptions", "import_asyncpg"]

logger = logging.getLogger("conveyor.jobs")
T = TypeVar("T")
#: A transaction that deadlocked (PostgreSQL aborts one side) is run again, this many times.
DEADLOCK_TRIES = 5
#: The longest a connection, a statement or a wait for a pooled connection may take, seconds.
#: Past it the connection is dropped and the call raises `StoreUnavailable`: a network that
#: went silent must not hold a worker (or a request) forever.
TIMEOUT_S = 10.0
#: The longest `close` waits for the server to answer its goodbyes, seconds.
CLOSE_TIMEOUT_S = 2.0


class _OneLine(logging.Filter):
    """asyncpg's pool, refilling itself during an outage, logs each failed try with a traceback.

    That is an outage, not a bug, and the store's callers already say it once per outage:
    each such record is kept as one line (the error's words: a failed connect's, which quote
    no URL), without the traceback.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None:
            words = " ".join(str(exc).split()) or type(exc).__name__
            record.msg = f"{record.getMessage()} ({words})"
            record.args = None
            record.exc_info = record.exc_text = None
        return True


logging.getLogger("asyncpg.pool").addFilter(_OneLine())


def import_asyncpg() -> Any:
    """The asyncpg module, or `StoreError` saying how to install it."""
    try:
        import asyncpg  # noqa: PLC0415 - the driver only when a PostgreSQL store is used
    except ImportError:  # pragma: no cover - depends on the install
        msg = "the PostgreSQL store needs the asyncpg driver: pip install 'conveyor[postgres]'"
        raise StoreError(msg) from None
    return asyncpg


class PostgresOptions(TypedDict, total=False):
    """The keyword options of `PostgresStore` and `PostgresConnector` (see `PostgresStore`)."""

    clock: Callable[[], float] | None
    min_size: int
    max_size: int
    migrate: bool
    timeout_s: float


class PostgresConnector:
    """The `Connector` of a PostgreSQL database (see `PostgresStore` for the arguments)."""

    def __init__(
        self,
        url: str,
        *,
        clock: Callable[[], float] | None = None,
        min_size: int = 1,
        max_size: int = 4,
        migrate: bool = True,
        timeout_s: float = TIMEOUT_S,
    ) -> None:
        #: The URL as it may be shown (its password taken out, `conveyor._urls.shown_url`).
        self.url = shown_url(url)
        self._timeout_s = timeout_s
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
        try:
            return await asyncpg.connect(
                self._dsn,
                server_settings=self._settings(),
                timeout=self._timeout_s,
                command_timeout=self._timeout_s,
            )
        except Exception as exc:
            raise self._unavailable(exc) or self._refused(exc) from exc

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
                try:
                    self._pool = await asyncpg.create_pool(
                        self._dsn,
                        min_size=self._min_size,
                        max_size=self._max_size,
                        server_settings=self._settings(),
                        timeout=self._timeout_s,
                        command_timeout=self._timeout_s,
                    )
                except Exception as exc:
                    raise self._unavailable(exc) or self._refused(exc) from exc
        return self._pool

    def _refused(self, exc: BaseException) -> StoreError:
        """`StoreError` for a connection refused for good: the URL or the server says no.

        A URL the driver cannot read (a port that is not a number, an unknown ``sslmode``), a
        login the server refuses (no such role, wrong password, no such database, TLS
        required): waiting will not help, so it is said at once, in one line that names the
        store (password hidden, also where the driver quotes it) and the fix.
        """
        if isinstance(exc, StoreError):
            return exc
        reason = hide_secrets(f"{type(exc).__name__}: {exc}", self._dsn).splitlines()[0][:300]
        msg = (
            f"the job store {shown_url(self._dsn)} refused the connection ({reason}): check"
            " the user, password, database and options in the store URL"
        )
        return StoreError(msg)

    def _unavailable(self, exc: BaseException) -> StoreUnavailable | None:
        """`StoreUnavailable` if `exc` says the server cannot be reached now, else None.

        Connection refused, reset or dropped; no answer within the timeout; the server
        starting, shutting down, out of connections or of disk; a read-only standby (a
        failover in progress). Any other error is a bug or a bad request, raised as it is.
        """
        if isinstance(exc, StoreUnavailable):
            return exc
        e = import_asyncpg().exceptions
        transient = (
            OSError,
            TimeoutError,
            e.PostgresConnectionError,
            e.OperatorInterventionError,
            e.InsufficientResourcesError,
            e.ReadOnlySQLTransactionError,
        )
        closed = isinstance(exc, e.InterfaceError) and "closed" in str(exc)
        if isinstance(exc, transient) or closed:
            return StoreUnavailable(shown_url(self._dsn), exc)
        return None

    async def upgrade(
        self, *, only_check: bool = False, then: Import | None = None
    ) -> tuple[int, int]:
        """`PostgresStore.upgrade`; `then` runs as `postgres_schema.migrate` says."""
        from .postgres_schema import LATEST_VERSION, current_version  # noqa: PLC0415

        async def upgrade(conn: Conn) -> tuple[int, int]:
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
            where = f"the database of {shown_url(self._dsn)}"
            if then is None:
                return await migrate(conn, where=where)
            return await migrate(
                conn, where=where, then=lambda raw: then(PgConnection(raw, self.schema))
            )

        conn = await self._connect_one()
        try:
            return await upgrade(conn)
        except Exception as exc:
            unavailable = self._unavailable(exc)
            if unavailable is None:
                raise
            conn.terminate()
            raise unavailable from exc
        finally:
            if not conn.is_closed():
                await conn.close(timeout=self._timeout_s)

    def now(self) -> float | None:
        """The store clock's time, or None: the database's clock (see `postgres_schema`)."""
        return None if self._clock is None else self._clock()

    async def transaction(self, work: Callable[[Connection], Coroutine[Any, Any, T]]) -> T:
        """`work` in one transaction (see `_tx`)."""
        return await self._tx(lambda conn: work(PgConnection(conn, self.schema)))

    async def read(self, work: Callable[[Connection], Coroutine[Any, Any, T]]) -> T:
        """`work` on a pooled connection, outside a transaction."""
        return await self._read(lambda conn: work(PgConnection(conn, self.schema)))

    async def _tx(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        """Run `fn(conn)` in one transaction; again if PostgreSQL broke a deadlock with it.

        Raises `StoreUnavailable` when the server cannot be reached (see `_unavailable`).
        """
        deadlock = import_asyncpg().exceptions.DeadlockDetectedError
        for attempt in range(DEADLOCK_TRIES):
            try:
                return await self._on_connection(fn, transaction=True)
            except deadlock:
                if attempt == DEADLOCK_TRIES - 1:
                    raise
                logger.info("conveyor store: a transaction deadlocked; running it again")
        raise AssertionError  # pragma: no cover - the loop returns or raises

    async def _read(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        return await self._on_connection(fn, transaction=False)

    async def _on_connection(self, fn: Callable[[Conn], Awaitable[T]], *, transaction: bool) -> T:
        """`fn(conn)` on a pooled connection; a connection that failed is dropped, not reused.

        Every statement is bounded by the timeout (``command_timeout``). A statement that
        timed out or lost its connection leaves the connection in an unknown state: it is
        terminated at once rather than rolled back (a rollback would wait on the same silent
        network), and the pool opens a new one on the next call.
        """
        try:
            pool = await self._pool_or_open()
            conn = await pool.acquire(timeout=self._timeout_s)
        except Exception as exc:
            raise self._unavailable(exc) or exc from exc
        try:
            return await (_in_transaction(conn, fn, self._unavailable) if transaction else fn(conn))
        except Exception as exc:
            unavailable = self._unavailable(exc)
            if unavailable is None:
                raise
            _drop(conn)
            raise unavailable from exc
        except BaseException:
            _drop(conn)  # cancelled mid-statement: its state is unknown
            raise
        finally:
            # The pool resets a connection it takes back; on one that died meanwhile that
            # fails, and the pool drops it (nothing to do if it went back when it was lost).
            # The call's own outcome stands: a commit that went through is not undone.
            with contextlib.suppress(Exception):
                await pool.release(conn)

    # -- notifications --------------------------------------------------------------------

    async def listen(self, channel: str, callback: Callable[[str], None]) -> None:
        """Call ``callback(job_id)`` on each notification of `channel` (``"jobs"``, ``"work"``).

        ``"jobs"``: a job changed (any process, any machine). ``"work"``: a job gained pending
        items. Delivered at the commit of the change; one listening connection per store, kept
        open (`conveyor.jobs.stores.postgres_listen`): after it was lost and opened again,
        every callback is called once with ``""`` (anything may have changed meanwhile).
        """
        await self._pool_or_open()
        try:
            await self._listener.listen(f"{self.channel_prefix}.conveyor_{channel}", callback)
        except Exception as exc:
            raise self._unavailable(exc) or exc from exc

    async def close(self) -> None:
        """Close the listening connection and the pool, within `CLOSE_TIMEOUT_S`.

        A goodbye the server does not answer (a silent network) is not waited for: past the
        timeout the connections are dropped, so a process told to stop exits in time.
        """
        if self._closed:
            return
        self._closed = True
        pool, self._pool = self._pool, None

        async def listener() -> None:
            try:
                await asyncio.wait_for(self._listener.close(), CLOSE_TIMEOUT_S)
            except (TimeoutError, Exception):
                self._listener.terminate()

        async def connections() -> None:
            if pool is None:
                return
            try:
                await asyncio.wait_for(pool.close(), CLOSE_TIMEOUT_S)
            except (TimeoutError, Exception):
                pool.terminate()

        await asyncio.gather(listener(), connections())

    def terminate(self) -> None:
        """Drop every connection at once, without a loop (for tests whose loop has ended)."""
        self._closed = True
        self._listener.terminate()
        if self._pool is not None:
            self._pool.terminate()
            self._pool = None


def _drop(conn: Conn) -> None:
    """Close a pooled connection at once, without a goodbye (it may be gone already)."""
    # A connection that was lost went back to the pool by itself, and its proxy then refuses
    # every call: there is nothing left to close.
    with contextlib.suppress(Exception):
        conn.terminate()


async def _in_transaction(
    conn: Conn,
    fn: Callable[[Conn], Awaitable[T]],
    unavailable: Callable[[BaseException], StoreUnavailable | None],
) -> T:
    """`fn(conn)` in a transaction: committed, or rolled back unless the connection failed."""
    tr = conn.transaction()
    await tr.start()
    try:
        result = await fn(conn)
    except BaseException as exc:
        if unavailable(exc) is None and not conn.is_closed():
            await tr.rollback()
        raise
    await tr.commit()
    return result
