"""`MemoryStore`: the store in a process's memory, for tests and jobs that need not survive it.

It is the SQLite store's schema and queries on a database in memory (``:memory:``), run on the
calling thread: the same statements as a file, so the in-memory twin behaves as the default
store does, by construction rather than by a second implementation to keep in step. A call
never awaits while it runs, so on one event loop each is atomic, as a transaction would be.
Why SQLite in memory over Python dicts: see ``docs/decisions.md``.
"""

from __future__ import annotations

import sqlite3
import threading
from typing import TYPE_CHECKING, Any, TypeVar

from ... import _clock
from .connector import run_now
from .manager import JobStore
from .sqlite_connection import SqliteConnection, Tx
from .sqlite_schema import migrate

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    from .connector import Connection

__all__ = ["MemoryConnector", "MemoryStore"]

T = TypeVar("T")


class MemoryConnector:
    """The `Connector` of a SQLite database in memory, run where it is called."""

    def __init__(self, *, clock: Callable[[], float] = _clock.wall) -> None:
        self._clock = clock
        conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        migrate(conn)
        self._conn = conn
        self._connection = SqliteConnection(conn)
        # A store shared by threads (a test's loop and a server's) runs one call at a time.
        self._lock = threading.Lock()

    def now(self) -> float:
        """The store clock's time."""
        return self._clock()

    async def transaction(self, work: Callable[[Connection], Coroutine[Any, Any, T]]) -> T:
        """`work` in one transaction, run to its end now."""
        with self._lock, Tx(self._conn):
            return run_now(work(self._connection))

    async def read(self, work: Callable[[Connection], Coroutine[Any, Any, T]]) -> T:
        """`work`, run to its end now."""
        with self._lock:
            return run_now(work(self._connection))

    async def close(self) -> None:
        """Nothing to release (the database lives as long as the store)."""


class MemoryStore(JobStore):
    """A `Store` in memory. `clock` returns Unix seconds (default: `conveyor._clock.wall`)."""

    def __init__(self, *, clock: Callable[[], float] = _clock.wall) -> None:
        super().__init__(MemoryConnector(clock=clock))
