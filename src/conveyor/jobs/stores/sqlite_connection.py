"""A SQLite connection as a `Connection`: the named queries of ``sql/{common,sqlite}/``.

Shared by the file store (`conveyor.jobs.stores.sqlite`) and the memory store
(`conveyor.jobs.stores.memory`). Its methods are coroutines that never suspend: a piece of work
on it runs to its end in one step (`conveyor.jobs.stores.connector.run_now`), on whichever
thread holds the connection. `Tx` is one write transaction.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from .connector import step_now
from .sqlite_schema import queries

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from ..model import ItemResult
    from .connector import Row

__all__ = ["SqliteConnection", "Tx"]

Q = queries()


class Tx:
    """``with Tx(conn):`` one write transaction, rolled back on any error."""

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


def _bind(params: dict[str, Any]) -> dict[str, Any]:
    """The parameters as SQLite binds them: a list as JSON text (the queries use json_each)."""
    if any(isinstance(v, list) for v in params.values()):
        return {k: json.dumps(v) if isinstance(v, list) else v for k, v in params.items()}
    return params


class SqliteConnection:
    """The named queries on `conn` (see the module docstring)."""

    __slots__ = ("conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    async def execute(self, name: str, /, **params: Any) -> int:
        """Run query `name`; how many rows it changed."""
        return int(self.conn.execute(Q[name], _bind(params)).rowcount)

    async def fetch(self, name: str, /, **params: Any) -> list[Row]:
        """Run query `name`; its rows."""
        return self.conn.execute(Q[name], _bind(params)).fetchall()

    async def fetchrow(self, name: str, /, **params: Any) -> Row | None:
        """Run query `name`; its first row, or None."""
        row: Row | None = self.conn.execute(Q[name], _bind(params)).fetchone()
        return row

    async def fetchval(self, name: str, /, **params: Any) -> Any:
        """Run query `name`; the first column of its first row (None without a row)."""
        row = self.conn.execute(Q[name], _bind(params)).fetchone()
        return None if row is None else row[0]

    async def insert_items(self, job_id: str, items: Iterable[str] | AsyncIterator[str]) -> int:
        """One ``executemany`` over the items, read lazily (an async iterator step by step)."""
        count = 0
        texts = step_now(items) if isinstance(items, AsyncIterator) else items

        def rows() -> Iterable[tuple[str, int, str]]:
            nonlocal count
            for index, text in enumerate(texts):
                count = index + 1
                yield job_id, index, text

        self.conn.executemany(Q["insert_item"], rows())
        return count

    async def record_items(
        self, job_id: str, worker: str, now: float | None, batch: Sequence[ItemResult]
    ) -> list[ItemResult]:
        """One ``executemany``; one statement an item only if some were not the worker's."""
        rows = [
            (r.state, r.attempts, r.latency_s, r.result_json, r.error_type, r.error_message, now,
             job_id, r.index, worker)
            for r in batch
        ]  # fmt: skip
        c = self.conn
        c.execute("SAVEPOINT batch")
        if c.executemany(Q["record_item"], rows).rowcount == len(rows):
            c.execute("RELEASE batch")
            kept = batch
        else:
            # Some items are no longer this worker's (its lease lapsed): redo one by one, to
            # know exactly the ones that were written.
            c.execute("ROLLBACK TO batch")
            c.execute("RELEASE batch")
            kept = [r for r, row in zip(batch, rows, strict=True) if c.execute(
                Q["record_item"], row).rowcount]  # fmt: skip
        return list(kept)
