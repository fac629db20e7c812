"""An asyncpg connection as a `Connection`: the named queries of ``sql/{common,postgres}/``.

Named parameters in, asyncpg's positional ones out (`postgres_schema.Query`). A job's items go
in by COPY, a batch of results in one statement (``unnest`` of arrays).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from .postgres_schema import queries

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Iterable, Sequence

    from ..model import ItemResult
    from .connector import Row

__all__ = ["CREATE_CHUNK", "Conn", "PgConnection"]

Conn = Any  # an asyncpg connection (typed loosely: asyncpg ships no stubs)
Q = queries()
#: Items sent to the database per COPY when a job is created: bounds memory, not speed.
CREATE_CHUNK = 10_000
#: ... and characters of them: 10,000 large items (up to 1 MiB each) would be gigabytes.
CREATE_BYTES = 16 * 1024 * 1024


async def _each(items: Iterable[str] | AsyncIterator[str]) -> AsyncGenerator[str, None]:
    """The items, from either kind of iterator; an async one is closed when done."""
    if not isinstance(items, AsyncIterator):
        for text in items:
            yield text
        return
    try:
        async for text in items:
            yield text
    finally:
        closing = getattr(items, "aclose", None)
        if closing is not None:
            await closing()


class PgConnection:
    """The named queries on `conn`; `schema` is where the tables are (None: the default)."""

    __slots__ = ("conn", "schema")

    def __init__(self, conn: Conn, schema: str | None) -> None:
        self.conn = conn
        self.schema = schema

    async def execute(self, name: str, /, **params: Any) -> int:
        """Run query `name`; how many rows it changed (from its status, ``UPDATE 3``)."""
        q = Q[name]
        status = str(await self.conn.execute(q.sql, *q.args(params)))
        tail = status.rsplit(" ", 1)[-1]
        return int(tail) if tail.isdigit() else 0

    async def fetch(self, name: str, /, **params: Any) -> list[Row]:
        """Run query `name`; its rows."""
        q = Q[name]
        return list(await self.conn.fetch(q.sql, *q.args(params)))

    async def fetchrow(self, name: str, /, **params: Any) -> Row | None:
        """Run query `name`; its first row, or None."""
        q = Q[name]
        row: Row | None = await self.conn.fetchrow(q.sql, *q.args(params))
        return row

    async def fetchval(self, name: str, /, **params: Any) -> Any:
        """Run query `name`; the first column of its first row."""
        q = Q[name]
        return await self.conn.fetchval(q.sql, *q.args(params))

    async def insert_items(self, job_id: str, items: Iterable[str] | AsyncIterator[str]) -> int:
        """Send the items by COPY, `CREATE_CHUNK` at a time (or `CREATE_BYTES` of them)."""
        count = 0
        size = 0
        chunk: list[tuple[str, int, str]] = []
        async with contextlib.aclosing(_each(items)) as texts:
            async for text in texts:
                chunk.append((job_id, count, text))
                count += 1
                size += len(text)
                if len(chunk) >= CREATE_CHUNK or size >= CREATE_BYTES:
                    await self._copy(chunk)
                    chunk, size = [], 0
        if chunk:
            await self._copy(chunk)
        return count

    async def _copy(self, rows: list[tuple[str, int, str]]) -> None:
        await self.conn.copy_records_to_table(
            "conveyor_items",
            records=rows,
            columns=("job_id", "idx", "input"),
            schema_name=self.schema,
        )

    async def record_items(
        self, job_id: str, worker: str, now: float | None, batch: Sequence[ItemResult]
    ) -> list[ItemResult]:
        """One statement for the batch; the rows it wrote come back."""
        rows = await self.fetch(
            "record_items",
            now=now,
            job=job_id,
            worker=worker,
            idx=[r.index for r in batch],
            state=[r.state for r in batch],
            attempts=[r.attempts for r in batch],
            latency=[r.latency_s for r in batch],
            result=[r.result_json for r in batch],
            etype=[r.error_type for r in batch],
            emsg=[r.error_message for r in batch],
        )
        by_index = {r.index: r for r in batch}
        return [by_index[row[0]] for row in rows]
