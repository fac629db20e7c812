"""`FileManager`: the files and batch records of a store, over its backend's `Connector`.

Every `conveyor.jobs.store.FileStore` call is here once, as `JobStore`'s are for jobs: it reads
the time once and runs the call's rule (`FileRules`) through the connector, in one
transaction (or as a read). Every store (`MemoryStore`, `SqliteStore`, `PostgresStore`) has
one, as its ``files``, on the same database as its jobs.

An upload (`Upload`) gathers what it is given into chunks of `CHUNK_BYTES` and appends each
in a transaction of its own: memory holds at most a chunk and what arrived with its end, and
no transaction (SQLite's single writer above all) is held while a client sends its bytes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import JobStateError
from ..file_model import CHUNK_BYTES, StoredFile, Written
from .file_rules import FileRules

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Sequence

    from ..file_model import BatchKind, BatchRow
    from ..model import Job
    from .connector import Connection, Connector
    from .rules import JobRules

__all__ = ["FileManager", "Upload"]


class Upload:
    """A file being written (see `FileManager.upload`): `write`, then `publish` or `discard`.

    Not visible to any reader until published. `close` ends the writing without publishing
    (a batch's output files are published with the batch's final change).
    """

    def __init__(self, manager: FileManager, file: StoredFile, chunk_bytes: int) -> None:
        self._manager = manager
        self.file = file
        # One chunk's room, filled in place and copied out once whole: memory holds it, the
        # chunk on its way to the store (and, for a moment, the one before it, which the
        # store's thread lets go of once it runs again), and the piece being written.
        self._buffer = bytearray(chunk_bytes)
        self._filled = 0
        self._seq = 0
        #: The bytes given to `write` so far.
        self.bytes = 0

    @property
    def id(self) -> str:
        """The file's id."""
        return self.file.id

    async def write(self, data: bytes) -> None:
        """Add `data`; each whole chunk is written to the store (`StoreUnavailable` if it fails)."""
        self.bytes += len(data)
        size = len(self._buffer)
        with memoryview(data) as view:
            start = 0
            while start < len(view):
                take = min(size - self._filled, len(view) - start)
                self._buffer[self._filled : self._filled + take] = view[start : start + take]
                self._filled += take
                start += take
                if self._filled == size:
                    self._filled = 0
                    await self._append(bytes(self._buffer))

    async def _append(self, chunk: bytes) -> None:
        await self._manager.append(self.file.id, self._seq, chunk)
        self._seq += 1

    async def close(self, *, items: int) -> Written:
        """Write what is left; the file as written, not yet visible (`FileManager.change_batch`)."""
        if self._filled:
            with memoryview(self._buffer) as view:
                chunk = bytes(view[: self._filled])
            self._filled = 0
            await self._append(chunk)
        return Written(self.file.id, self.bytes, items, self._seq)

    async def publish(self, *, items: int) -> StoredFile:
        """Write what is left and make the file visible, whole; `items`: its non-blank lines."""
        written = await self.close(items=items)
        await self._manager.publish(written)
        return StoredFile(
            written.id,
            self.file.tenant,
            self.file.filename,
            self.file.purpose,
            written.bytes,
            items,
            written.chunks,
            self.file.created_at,
        )

    async def discard(self) -> None:
        """Remove what was written, published or not: for an upload whose writer failed.

        A publish whose answer was lost (its await cancelled) may have made it visible:
        nobody was told its id, so it goes too.
        """
        self._filled = 0
        await self._manager.discard(self.file.id)


class FileManager:
    """Uploaded files and batch records over `connector`; `jobs` are its store's job rules.

    Every store's ``files`` (`conveyor.jobs.store.FileStore`), in the store's database. The
    job rules serve a batch's cancel. What it guarantees:

    - **Whole files only.** An upload is written in chunks, each in a transaction of its own
      (no transaction is held while a client sends), and is seen by no reader until
      `Upload.publish` makes it whole in one step. An upload idle for `sweep_uploads`'s
      `idle_s` is removed, and a chunk sent after that is refused.
    - **Bounded memory.** An upload or a read holds a chunk or two
      (`conveyor.jobs.file_model.CHUNK_BYTES`), never the file.
    - **Tenants apart.** Every read names the tenant: another tenant's file or batch is not
      found, as one that does not exist.
    - **Changes take turns.** `change_batch` changes a record under its row's lock, so the
      changes of any number of processes to one batch never interleave.
    """

    def __init__(
        self, connector: Connector, jobs: JobRules, *, chunk_bytes: int = CHUNK_BYTES
    ) -> None:
        self._connector = connector
        self._jobs = jobs
        self._rules = FileRules()
        self.chunk_bytes = chunk_bytes

    # -- files ------------------------------------------------------------------------------

    async def upload(
        self, tenant: str, file_id: str, *, created_at: float, filename: str = "", purpose: str = ""
    ) -> Upload:
        """Begin writing a new file (not visible until `Upload.publish`)."""
        file = StoredFile(file_id, tenant, filename, purpose, 0, 0, 0, created_at)
        now = self._connector.now()
        await self._connector.transaction(lambda c: self._rules.begin(c, file, now))
        return Upload(self, file, self.chunk_bytes)

    async def append(self, file_id: str, seq: int, data: bytes) -> None:
        """Write chunk `seq` of an upload; `JobStateError` if the upload was removed."""
        now = self._connector.now()
        done = await self._connector.transaction(
            lambda c: self._rules.append(c, file_id, seq, data, now)
        )
        if not done:
            msg = (
                f"the upload of {file_id} was removed: it sent nothing for too long, or was"
                " given up; send the file again"
            )
            raise JobStateError(msg)

    async def publish(self, written: Written) -> None:
        """Make a written upload visible; `JobStateError` if it was removed."""
        if not await self._connector.transaction(lambda c: self._rules.publish(c, written)):
            msg = f"the upload of {written.id} was removed before it was whole; send it again"
            raise JobStateError(msg)

    async def discard(self, file_id: str) -> None:
        """Remove an upload whose writer failed, whatever its state (nobody has its id)."""
        await self._connector.transaction(lambda c: self._rules.discard(c, file_id))

    async def sweep_uploads(self, *, idle_s: float) -> int:
        """Remove the uploads that wrote nothing for `idle_s` seconds; how many."""
        now = self._connector.now()
        return await self._connector.transaction(lambda c: self._rules.sweep(c, idle_s, now))

    async def file(self, tenant: str, file_id: str) -> StoredFile | None:
        """The tenant's whole file, or None."""
        return await self._connector.read(lambda c: self._rules.get_file(c, tenant, file_id))

    async def files(self, tenant: str, *, purpose: str | None = None) -> list[StoredFile]:
        """The tenant's whole files (of `purpose`), newest first."""
        return await self._connector.read(lambda c: self._rules.list_files(c, tenant, purpose))

    async def delete_file(self, tenant: str, file_id: str) -> bool:
        """Delete the tenant's file; whether there was one."""
        return await self._connector.transaction(
            lambda c: self._rules.delete_file(c, tenant, file_id)
        )

    async def chunks(self, file: StoredFile) -> AsyncIterator[bytes]:
        """The file's bytes, a chunk per read; `JobStateError` if it is deleted meanwhile."""
        for seq in range(file.chunks):

            async def read(c: Connection, seq: int = seq) -> bytes | None:
                return await self._rules.chunk(c, file.id, seq)

            data = await self._connector.read(read)
            if data is None:
                msg = f"the file {file.id} was deleted while it was read"
                raise JobStateError(msg)
            yield data

    # -- batch records ----------------------------------------------------------------------

    async def add_batch(self, row: BatchRow) -> None:
        """Store a new batch's record."""
        if not await self._connector.transaction(lambda c: self._rules.add_batch(c, row)):
            msg = f"a batch {row.id} exists already"
            raise JobStateError(msg)

    async def batch(self, tenant: str, kind: BatchKind, batch_id: str) -> BatchRow | None:
        """The tenant's batch record of `kind`, or None."""
        return await self._connector.read(
            lambda c: self._rules.get_batch(c, tenant, kind, batch_id)
        )

    async def batches(self, tenant: str, kind: BatchKind) -> list[BatchRow]:
        """The tenant's batch records of `kind`, newest first."""
        return await self._connector.read(lambda c: self._rules.list_batches(c, tenant, kind))

    async def due_batches(
        self, kind: BatchKind, *, due: float
    ) -> tuple[list[BatchRow], float | None]:
        """Every tenant's batches of `kind` not ended and due at `due`; the next due time."""
        return await self._connector.read(lambda c: self._rules.due(c, kind, due))

    async def delete_batch(self, tenant: str, kind: BatchKind, batch_id: str) -> bool:
        """Delete the tenant's batch record; whether there was one."""
        return await self._connector.transaction(
            lambda c: self._rules.delete_batch(c, tenant, kind, batch_id)
        )

    async def change_batch(
        self,
        tenant: str,
        kind: BatchKind,
        batch_id: str,
        change: Callable[[BatchRow], BatchRow | None],
        *,
        cancel_job: bool = False,
        publish: Sequence[Written] = (),
    ) -> tuple[BatchRow | None, Job | None]:
        """Change a batch's record under its row's lock, in one transaction.

        `change` gets the record as it stands and returns it changed, or None to leave it (it
        is pure: it may run again, and runs where the transaction does). When it changed it:
        the files `publish` become visible and, with `cancel_job`, the batch's job is cancelled
        (in the same transaction); when it did not, or there is no such batch, the files are
        removed. Returns the record as it now is (None: no such batch) and the cancelled job.
        """
        now = self._connector.now()

        async def work(c: Connection) -> tuple[BatchRow | None, Job | None]:
            row = await self._rules.get_batch(c, tenant, kind, batch_id, lock=True)
            new = None if row is None else change(row)
            if new is None:
                for written in publish:
                    await self._rules.discard(c, written.id)
                return row, None
            await self._rules.save_batch(c, new)
            for written in publish:
                if not await self._rules.publish(c, written):
                    msg = f"the file {written.id} was removed before it was published"
                    raise JobStateError(msg)
            job = None
            if cancel_job and new.job_id is not None:
                job = await self._jobs.get_job(c, new.job_id)
                if job is not None:
                    job = await self._jobs.request_cancel(c, new.job_id, now)
            return new, job

        return await self._connector.transaction(work)
