"""What a Message Batch is beyond its job: `MessageBatchRecord`, kept by `MessageBatchRecords`.

The batch's requests are its job's items, in the job store; its progress, counts and end are
the job's. The record keeps only what the job does not know: when the batch was made and
expires, when a cancel was asked, whether it expired, and the requests refused before the job
was made (each with its position, its custom_id and why), which never reached the store.

Today the records are small JSON files in the tenant's folder (`Files.folder`), one per batch,
written whole (a temporary file renamed over the old one), as OpenAI's batch records are
(`batches.BatchRecords`). Everything that reads or writes them goes through
`MessageBatchRecords`' four methods, so that they can move into the job store later.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from ..jobs.ids import new_id

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

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

    @classmethod
    def from_json(cls, text: str) -> MessageBatchRecord:
        """A record read back (`ValueError`, `TypeError` or `KeyError` if it is not one)."""
        data: dict[str, Any] = json.loads(text)
        data["refused"] = [Refused(**r) for r in data.get("refused", ())]
        return cls(**data)


class MessageBatchRecords:
    """The Message Batch records of one tenant, as JSON files in its folder.

    A made-up or foreign id is simply not found: ids are checked against their pattern
    before any path is built, and each tenant has its own folder.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _path(self, batch_id: str) -> Path | None:
        return self.folder / f"{batch_id}.json" if _ID.match(batch_id) else None

    def get(self, batch_id: str) -> MessageBatchRecord | None:
        """The record, or None."""
        path = self._path(batch_id)
        if path is None:
            return None
        try:
            return MessageBatchRecord.from_json(path.read_text("utf-8"))
        except (OSError, ValueError, TypeError, KeyError):
            return None

    def put(self, record: MessageBatchRecord) -> None:
        """Write the record whole (a temporary file renamed over the old one)."""
        path = self._path(record.id)
        assert path is not None, record.id
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(record.to_json(), "utf-8")
        tmp.replace(path)

    def delete(self, batch_id: str) -> None:
        """Remove the record (nothing if there is none)."""
        path = self._path(batch_id)
        if path is not None:
            path.unlink(missing_ok=True)

    def ids(self) -> list[str]:
        """The ids of every record, newest first (ids sort by creation time)."""
        found = (p.stem for p in self.folder.glob("msgbatch_*.json"))
        return sorted((i for i in found if _ID.match(i)), reverse=True)

    def all(self) -> Iterator[MessageBatchRecord]:
        """Every record, newest first."""
        for batch_id in self.ids():
            record = self.get(batch_id)
            if record is not None:
                yield record
