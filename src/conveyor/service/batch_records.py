"""One tenant's batch records of one kind, in the job store: what OpenAI's and Anthropic's share.

`conveyor.service.batches.BatchRecords` (kind ``openai``) and
`conveyor.service.message_batch_records.MessageBatchRecords` (kind ``anthropic``) are this,
each with its record type, its id pattern and its own reads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    import re
    from collections.abc import Callable, Sequence

    from ..jobs.file_model import BatchKind, BatchRow, Written
    from ..jobs.model import Job
    from ..jobs.store import FileStore

__all__ = ["TenantBatchRecords"]


class _Record(Protocol):
    def to_row(self, tenant: str) -> BatchRow: ...


R = TypeVar("R", bound=_Record)


class TenantBatchRecords(Generic[R]):
    """The batch records of one tenant, in the job store.

    A made-up or foreign id is simply not found: ids are checked against their pattern, and
    every read names the tenant.
    """

    #: The store's kind of these records.
    kind: ClassVar[BatchKind]
    #: What an id of this kind looks like; any other is not looked up.
    id_pattern: ClassVar[re.Pattern[str]]

    def __init__(self, store: FileStore, tenant: str) -> None:
        self.store = store
        self.tenant = tenant

    def read(self, row: BatchRow) -> R:
        """The record a row of the store holds."""
        raise NotImplementedError

    async def get(self, batch_id: str) -> R | None:
        """The record, or None."""
        if not self.id_pattern.match(batch_id):
            return None
        row = await self.store.batch(self.tenant, self.kind, batch_id)
        return None if row is None else self.read(row)

    async def add(self, record: R) -> None:
        """Store a new record."""
        await self.store.add_batch(record.to_row(self.tenant))

    async def change(
        self,
        batch_id: str,
        change: Callable[[R], bool],
        *,
        cancel_job: bool = False,
        publish: Sequence[Written] = (),
    ) -> tuple[R | None, Job | None]:
        """Change the record as it stands, under its row's lock (`FileStore.change_batch`).

        `change` changes the record it is given and says whether it did (it may run again:
        it must depend on nothing but the record and what it closes over); with
        `cancel_job`, a change also cancels the batch's job, in the same transaction; `publish`
        goes out with the change. Returns the record as it now is (None: gone) and the job, if
        it cancelled it.
        """

        def on_row(row: BatchRow) -> BatchRow | None:
            record = self.read(row)
            return record.to_row(row.tenant) if change(record) else None

        row, job = await self.store.change_batch(
            self.tenant, self.kind, batch_id, on_row, cancel_job=cancel_job, publish=publish
        )
        return (None if row is None else self.read(row)), job
