"""What a Message Batch is beyond its job: `MessageBatchRecord`, kept by `MessageBatchRecords`.

The batch's requests are its job's items, in the job store; its progress, counts and end are
the job's. The record keeps only what the job does not know: when the batch was made and
expires, when a cancel was asked, whether it expired, and the requests refused before the job
was made (each with its position, its custom_id and why), which never reached the store.

The records are rows of the job store (`conveyor.jobs.store.FileStore`, kind
``anthropic``), as OpenAI's batch records are (`batches.BatchRecords`): every service instance
on one store serves every batch, and each change of a record is made under its row's lock
(`MessageBatchRecords.change`), so changes from several instances take turns.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from ..jobs.file_model import BatchRow
from ..jobs.ids import new_id
from .batch_records import TenantBatchRecords

__all__ = ["EXPIRES_AFTER_S", "MessageBatchRecord", "MessageBatchRecords", "Refused"]

#: A batch expires this long after it was made (Anthropic's: 24 hours).
EXPIRES_AFTER_S = 86_400.0
_ID = re.compile(r"^msgbatch_[0-9a-f]{32}$")


@dataclass(frozen=True, slots=True)
class Refused:
    """A request refused before the job was made: its place in the batch, custom_id and why."""

    position: int
    custom_id: str | None
    message: str


@dataclass(kw_only=True)
class MessageBatchRecord:
    """A Message Batch beyond its job (Unix times in seconds)."""

    id: str
    created_at: float
    #: The requests in the batch, refused ones included.
    total: int
    #: The batch's job (its valid requests, in order); None when every request was refused.
    job_id: str | None = None
    refused: list[Refused] = field(default_factory=list)
    cancel_initiated_at: float | None = None
    #: When its job ended (its ``finished_at``), written once, by the first read or sweep that
    #: finds it ended (at once when every request was refused): the sweep passes it by after.
    ended_at: float | None = None
    #: When the batch was found past `expires_at` and its job stopped (then what did not
    #: finish is ``expired``, not ``canceled``).
    expired_at: float | None = None

    @classmethod
    def new(cls, *, now: float, total: int) -> MessageBatchRecord:
        """A batch made at `now`; its id sorts by creation time (a UUIDv7)."""
        return cls(id=f"msgbatch_{new_id(now).replace('-', '')}", created_at=now, total=total)

    @property
    def expires_at(self) -> float:
        """When the batch expires if it has not ended."""
        return self.created_at + EXPIRES_AFTER_S

    def to_json(self) -> str:
        """The record as stored."""
        return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":"))

    def to_row(self, tenant: str) -> BatchRow:
        """The record as the job store keeps it (ended once its end was recorded)."""
        ended = self.ended_at is not None
        return BatchRow(
            self.id,
            tenant,
            "anthropic",
            self.job_id,
            self.created_at,
            self.expires_at,
            ended,
            self.to_json(),
        )

    @classmethod
    def from_json(cls, text: str) -> MessageBatchRecord:
        """A record read back (`ValueError`, `TypeError` or `KeyError` if it is not one)."""
        data: dict[str, Any] = json.loads(text)
        data["refused"] = [Refused(**r) for r in data.get("refused", ())]
        return cls(**data)


class MessageBatchRecords(TenantBatchRecords[MessageBatchRecord]):
    """The Message Batch records of one tenant, in the job store (see `TenantBatchRecords`)."""

    kind = "anthropic"
    id_pattern = _ID

    def read(self, row: BatchRow) -> MessageBatchRecord:
        """The record a row of the store holds."""
        return MessageBatchRecord.from_json(row.record)

    async def delete(self, batch_id: str) -> None:
        """Remove the record (nothing if there is none)."""
        if self.id_pattern.match(batch_id):
            await self.store.delete_batch(self.tenant, self.kind, batch_id)

    async def ids(self) -> list[str]:
        """The ids of every record, newest first (ids sort by creation time)."""
        return [row.id for row in await self.store.batches(self.tenant, self.kind)]
