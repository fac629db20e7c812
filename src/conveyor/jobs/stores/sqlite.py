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
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ... import _clock
from ..errors import StoreError, StoreUnavailable
from .connector import run_now
from .manager import JobStore
from .sqlite_connection import SqliteConnection, Tx
from .sqlite_schema import connect, migrate, probe

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    from .connector import Connection
    from .rules import JobRules

__all__ = ["SqliteConnector", "SqliteStore", "check_place"]

T = TypeVar("T")
_Tx = Tx  # its name here before it moved (tests use it)
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


def check_place(path: Path, *, create: bool) -> None:
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


class SqliteConnector:
    """The `Connector` of a SQLite file: a writer thread and a reader thread (module docstring).

    Raises `StoreError` at once, having written nothing, for a file that is not a Conveyor
    store or comes from a newer Conveyor.
    """

    def __init__(
        self, path: str | Path, *, clock: Callable[[], float] = _clock.wall, create: bool = True
    ) -> None:
        self.path = Path(path)
        self._clock = clock
        check_place(self.path, create=create)
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
        self._write_conn = write_conn
        self._read_conn = read_conn
        self._writer = SqliteConnection(write_conn)
        self._reader = SqliteConnection(read_conn)
        self._write_pool = ThreadPoolExecutor(1, thread_name_prefix="conveyor-store-writer")
        self._read_pool = ThreadPoolExecutor(1, thread_name_prefix="conveyor-store-reader")
        self._closed = False
        self._was_full = False  # a write failed on a full disk: reclaim at the next that works

    def now(self) -> float:
        """The store clock's time."""
        return self._clock()

    async def transaction(self, work: Callable[[Connection], Coroutine[Any, Any, T]]) -> T:
        """`work` in one ``BEGIN IMMEDIATE`` transaction, whole, on the writer thread."""
        return await self._write(self._in_transaction, work)

    def _in_transaction(self, work: Callable[[Connection], Coroutine[Any, Any, T]]) -> T:
        with Tx(self._write_conn):
            return run_now(work(self._writer))

    async def read(self, work: Callable[[Connection], Coroutine[Any, Any, T]]) -> T:
        """`work` on the reader thread: it sees the last commit, and never waits for a write."""
        return await self._read(lambda: run_now(work(self._reader)))

    async def _write(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(self._write_pool, partial(fn, *args))
        except sqlite3.OperationalError as exc:
            unavailable = self.unavailable(exc)
            if unavailable is None:
                raise
            if "full" in str(exc):
                self._was_full = True
                await loop.run_in_executor(self._write_pool, self._reclaim)
            raise unavailable from exc
        if self._was_full:
            # The write-ahead log only shrinks at a checkpoint, which runs once it passes
            # ~4 MB: on a small disk it can be what filled it, and it would fill the room just
            # made again. The writes that have room fold it into the database, until done.
            done = await loop.run_in_executor(self._write_pool, self._reclaim)
            self._was_full = not done
        return result

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._read_pool, partial(fn, *args))
        except sqlite3.OperationalError as exc:
            raise self.unavailable(exc) or exc from exc

    def _reclaim(self) -> bool:
        """Checkpoint the write-ahead log and truncate it; whether that was done whole.

        It is not while a read holds the log (busy), or while the disk has no room for the
        database to take the log's pages.
        """
        try:
            busy, _, _ = self._write_conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.Error:
            return False
        return bool(busy == 0)

    def unavailable(self, exc: sqlite3.OperationalError) -> StoreUnavailable | None:
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

    @property
    def closed(self) -> bool:
        """Whether `close` (or `shutdown`) ran."""
        return self._closed

    async def close(self) -> None:
        """Finish queued work, then close both connections."""
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.shutdown)

    def shutdown(self) -> None:
        """Finish queued work, then close both connections, without a loop."""
        self._closed = True
        self._write_pool.shutdown(wait=True)
        self._read_pool.shutdown(wait=True)
        self._write_conn.close()
        self._read_conn.close()


class SqliteStore(JobStore):
    """A `Store` in one SQLite file (created if missing; migrated to the current schema).

    Raises `StoreError` at once, having written nothing, for a file that is not a Conveyor
    store or comes from a newer Conveyor.

    Args:
        path: the database file.
        clock: returns Unix seconds (default: `conveyor._clock.wall`); read on the event loop.
        create: create the file if it is missing (else `StoreError`).
    """

    def __init__(
        self, path: str | Path, *, clock: Callable[[], float] = _clock.wall, create: bool = True
    ) -> None:
        self._sqlite = SqliteConnector(path, clock=clock, create=create)
        super().__init__(self._sqlite)
        self.path = self._sqlite.path

    @property
    def _writer(self) -> JobRules:
        """The rules the writer thread runs (a test replaces one to fake a failing write)."""
        return self._rules

    @property
    def _closed(self) -> bool:
        return self._sqlite.closed

    def _shutdown(self) -> None:
        self._sqlite.shutdown()

    def _unavailable(self, exc: sqlite3.OperationalError) -> StoreUnavailable | None:
        return self._sqlite.unavailable(exc)
