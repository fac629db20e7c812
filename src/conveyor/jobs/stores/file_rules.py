"""The rules of files and batch records, written once: what every store does in a transaction.

`FileRules` is to files and batch records what `conveyor.jobs.stores.rules.JobRules` is to
jobs: each call's steps on a `Connection` (the dialect's named queries), never SQL, a driver
or a thread. The same rules run on SQLite, in memory and on PostgreSQL.

- **An upload** is a row ``uploading`` and its chunks, each appended in a transaction of its
  own that first counts it on the row (``touch_upload``: the chunk must be the next one, and
  the upload still there). ``publish`` makes it ``ready`` in one statement: a reader finds a
  whole file or none. An upload idle past its time is removed whole by `sweep`; a chunk that
  comes after is refused (the row is gone), never written beside nothing.
- **A batch record** is changed under its row's lock (PostgreSQL: ``FOR UPDATE``; SQLite: the
  single writer): the change is a pure function of the record as it stands in the
  transaction, so changes from any number of service instances take turns.
- **A job made from a file** (`file_items`) reads the file's chunks on the connection of the
  transaction that creates the job: its items are the file as it is then, and nothing of the
  file is held in memory but a chunk and a line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from ..errors import InvalidJob
from ..file_model import BatchRow, StoredFile, Written

if TYPE_CHECKING:
    from collections.abc import AsyncIterable, AsyncIterator, Iterable

    from ..file_model import BatchKind, FileItems
    from .connector import Connection, Row

__all__ = ["FileRules", "batch_from_row", "file_from_row", "file_items", "split_lines"]


def file_from_row(row: Row) -> StoredFile:
    """A `StoredFile` from a row of the ``get_file`` and ``list_files`` queries."""
    id_, tenant, filename, purpose, size, items, chunks, created = row
    return StoredFile(id_, tenant, filename, purpose, size, items, chunks, created)


def batch_from_row(row: Row) -> BatchRow:
    """A `BatchRow` from a row of the batch queries."""
    id_, tenant, kind, job_id, created, expires, ended, record = row
    return BatchRow(id_, tenant, kind, job_id, created, expires, bool(ended), record)


async def split_lines(chunks: AsyncIterable[bytes], max_line_bytes: int) -> AsyncIterator[bytes]:
    r"""The lines of a stream of chunks, without their newline; of a longer one, its start.

    A line longer than `max_line_bytes` is given as its first ``max_line_bytes + 1`` bytes
    (so that the reader sees it is too long) and the rest is passed over: memory holds a
    chunk and at most one such line, however long the lines are. A last line without a
    newline is a line; nothing after a last newline is.
    """
    line = bytearray()
    room = max_line_bytes + 1
    async for chunk in chunks:
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            piece = chunk[start:] if end < 0 else chunk[start:end]
            if len(line) < room:
                line += piece[: room - len(line)]
            if end < 0:
                break
            yield bytes(line)
            line.clear()
            start = end + 1
    if line:
        yield bytes(line)


async def _chunks_of(c: Connection, file: StoredFile) -> AsyncIterator[bytes]:
    for seq in range(file.chunks):
        data = await c.fetchval("file_chunk", id=file.id, seq=seq)
        if data is None:  # removed meanwhile (PostgreSQL reads committed rows per statement)
            msg = f"the file {file.id!r} was deleted while it was read: upload it again"
            raise InvalidJob(msg)
        yield bytes(data)


async def file_items(c: Connection, spec: FileItems, tenant: str) -> AsyncIterator[str]:
    """A job's items from the `tenant`'s file `spec` names, read on `c` (see `FileItems`)."""
    row = await c.fetchrow("get_file", id=spec.file_id, tenant=tenant)
    if row is None:
        msg = f"no file {spec.file_id!r}: upload it first (POST /v1/files)"
        raise InvalidJob(msg)
    file = file_from_row(row)
    number = 0
    async for line in split_lines(_chunks_of(c, file), spec.max_line_bytes):
        number += 1
        if not line.strip():
            continue
        if len(line) > spec.max_line_bytes:
            msg = f"line {number} of {file.id} is over {spec.max_line_bytes:,} bytes"
            raise InvalidJob(msg)
        yield cast("str", spec.item(number, line))


class FileRules:
    """Every file and batch-record call's steps, given a `Connection` (see the module docstring).

    Times: `now` is the store clock's Unix seconds, or None for the database's clock.
    """

    # -- uploads ----------------------------------------------------------------------------

    async def begin(self, c: Connection, file: StoredFile, now: float | None) -> None:
        """Insert the row of a new upload (``uploading``: nobody reads it yet)."""
        params: dict[str, Any] = {"id": file.id, "tenant": file.tenant, "now": now}
        params |= {"filename": file.filename, "purpose": file.purpose, "created": file.created_at}
        await c.execute("insert_upload", **params)

    async def append(
        self, c: Connection, file_id: str, seq: int, data: bytes, now: float | None
    ) -> bool:
        """Write chunk `seq` of an upload; False if the upload is gone (swept or discarded)."""
        if await c.execute("touch_upload", id=file_id, seq=seq, now=now) != 1:
            return False
        await c.execute("insert_chunk", id=file_id, seq=seq, data=data)
        return True

    async def publish(self, c: Connection, written: Written) -> bool:
        """Make a whole upload ``ready``; False if it is gone or was not written whole."""
        params = {"id": written.id, "bytes": written.bytes, "items": written.items}
        return await c.execute("publish_file", chunks=written.chunks, **params) == 1

    async def discard(self, c: Connection, file_id: str) -> None:
        """Remove an upload, whatever its state (its writer failed: nobody has its id)."""
        if await c.execute("discard_upload", id=file_id):
            await c.execute("delete_chunks", id=file_id)

    async def sweep(self, c: Connection, idle_s: float, now: float | None) -> int:
        """Remove the uploads idle for `idle_s` (their writer died or stalled); how many."""
        gone = [row[0] for row in await c.fetch("idle_uploads", idle_s=idle_s, now=now)]
        for file_id in gone:
            await c.execute("delete_chunks", id=file_id)
        return len(gone)

    async def add_whole(self, c: Connection, file: StoredFile, chunks: Iterable[bytes]) -> bool:
        """Insert a whole file at once (an import); False if its id is taken already.

        Its chunks are counted as they are written (`file.chunks` is not read).
        """
        if await c.fetchval("file_exists", id=file.id) is not None:
            return False
        count = 0
        for seq, data in enumerate(chunks):
            await c.execute("insert_chunk", id=file.id, seq=seq, data=data)
            count = seq + 1
        params: dict[str, Any] = {"id": file.id, "tenant": file.tenant, "bytes": file.bytes}
        params |= {"filename": file.filename, "purpose": file.purpose, "items": file.items}
        await c.execute("insert_ready_file", chunks=count, created=file.created_at, **params)
        return True

    async def known_tenants(self, c: Connection) -> list[str]:
        """Every tenant that has a job in the store."""
        return [row[0] for row in await c.fetch("tenants_of_jobs")]

    # -- reads ------------------------------------------------------------------------------

    async def get_file(self, c: Connection, tenant: str, file_id: str) -> StoredFile | None:
        """The tenant's whole file, or None."""
        row = await c.fetchrow("get_file", id=file_id, tenant=tenant)
        return None if row is None else file_from_row(row)

    async def list_files(self, c: Connection, tenant: str, purpose: str | None) -> list[StoredFile]:
        """The tenant's whole files (of `purpose`), newest first."""
        rows = await c.fetch("list_files", tenant=tenant, purpose=purpose)
        return [file_from_row(r) for r in rows]

    async def chunk(self, c: Connection, file_id: str, seq: int) -> bytes | None:
        """Chunk `seq` of a file, or None (deleted meanwhile)."""
        data = await c.fetchval("file_chunk", id=file_id, seq=seq)
        return None if data is None else bytes(data)

    async def delete_file(self, c: Connection, tenant: str, file_id: str) -> bool:
        """Delete the tenant's file and its chunks; whether there was one."""
        if not await c.execute("delete_file", id=file_id, tenant=tenant):
            return False
        await c.execute("delete_chunks", id=file_id)
        return True

    # -- batch records ----------------------------------------------------------------------

    async def add_batch(self, c: Connection, row: BatchRow) -> bool:
        """Insert a batch's record; False if its id is taken already."""
        if await c.fetchval("batch_exists", id=row.id) is not None:
            return False
        params: dict[str, Any] = {"id": row.id, "tenant": row.tenant, "kind": row.kind}
        params |= {"job": row.job_id, "created": row.created_at, "expires": row.expires_at}
        await c.execute("insert_batch", ended=row.ended, record=row.record, **params)
        return True

    async def get_batch(
        self, c: Connection, tenant: str, kind: BatchKind, batch_id: str, *, lock: bool = False
    ) -> BatchRow | None:
        """The tenant's batch record; with `lock`, held until the transaction ends."""
        query = "lock_batch" if lock else "get_batch"
        row = await c.fetchrow(query, id=batch_id, tenant=tenant, kind=kind)
        return None if row is None else batch_from_row(row)

    async def list_batches(self, c: Connection, tenant: str, kind: BatchKind) -> list[BatchRow]:
        """The tenant's batch records of one kind, newest first."""
        rows = await c.fetch("list_batches", tenant=tenant, kind=kind)
        return [batch_from_row(r) for r in rows]

    async def save_batch(self, c: Connection, row: BatchRow) -> None:
        """Write a batch's record (its id, tenant, kind and times stay as they were)."""
        params = {"id": row.id, "job": row.job_id, "ended": row.ended, "record": row.record}
        await c.execute("update_batch", **params)

    async def delete_batch(
        self, c: Connection, tenant: str, kind: BatchKind, batch_id: str
    ) -> bool:
        """Delete the tenant's batch record; whether there was one."""
        if await self.get_batch(c, tenant, kind, batch_id, lock=True) is None:
            return False
        await c.execute("delete_batch", id=batch_id)
        return True

    async def due(
        self, c: Connection, kind: BatchKind, due: float
    ) -> tuple[list[BatchRow], float | None]:
        """The batches of `kind` not ended whose time is up at `due`, and the next one's time."""
        rows = await c.fetch("due_batches", kind=kind, due=due)
        following = await c.fetchval("next_due", kind=kind, due=due)
        return [batch_from_row(r) for r in rows], following
