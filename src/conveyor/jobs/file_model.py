"""What the store keeps beside jobs: uploaded files and the records of batches (values only).

A file is stored as chunks of bytes (`CHUNK_BYTES` each but the last), written while it is
``uploading`` and readable once ``ready``; a batch record is the JSON of what a batch API
(OpenAI's, Anthropic's) shows beyond its job, with the few columns the store reads itself.
The store's calls are `conveyor.jobs.store.FileStore`; how a file becomes a job's items in the
transaction that creates the job: `FileItems`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "CHUNK_BYTES",
    "MAX_LINE_BYTES",
    "BatchKind",
    "BatchRow",
    "FileItems",
    "StoredFile",
    "Written",
]

#: A stored file's chunk: 1 MiB. Memory holds a chunk or two of an upload or a read, never
#: the file; a 1 GiB file is 1,024 rows (a row and a transaction per MiB cost little next to
#: moving the MiB). `bench/file_chunks.py` measures the sizes around it.
CHUNK_BYTES = 1 << 20
#: A line read from a stored file longer than this is cut to its first bytes (an error
#: wherever it is read: no item, no request is that long).
MAX_LINE_BYTES = 16 * 1024 * 1024

#: The two batch APIs whose records the store keeps.
BatchKind = Literal["openai", "anthropic"]


@dataclass(frozen=True, slots=True)
class StoredFile:
    """A file that is whole in the store (Unix seconds)."""

    id: str
    tenant: str
    filename: str
    purpose: str
    bytes: int
    #: Its non-blank lines (counted when it was written).
    items: int
    chunks: int
    created_at: float


@dataclass(frozen=True, slots=True)
class Written:
    """A file written whole but not yet visible: made ``ready`` with its batch's change."""

    id: str
    bytes: int
    items: int
    chunks: int


@dataclass(frozen=True, slots=True)
class BatchRow:
    """A batch's record as stored: its JSON, and the columns the store reads."""

    id: str
    tenant: str
    kind: BatchKind
    job_id: str | None
    created_at: float
    #: When the batch expires unless it ended (the sweep's due time).
    expires_at: float
    #: Whether its outcome is final (the sweep then passes it by).
    ended: bool
    #: The rest of the record, as its API module writes it (JSON text).
    record: str


@dataclass(frozen=True, slots=True)
class FileItems:
    """A job's items: the lines of a stored file, read in the transaction that creates the job.

    The file is the job's tenant's (another tenant's is not found). Blank lines are passed
    over. `item` turns each other line (its number, counting from 1, and its bytes without the
    newline) into the item: a value for `conveyor.jobs.Jobs.submit`, which checks and encodes
    it; its JSON text for a store's ``create_job``. A line longer than `max_line_bytes`
    refuses the job (`InvalidJob` naming the line), as does a file the tenant does not have.
    """

    file_id: str
    item: Callable[[int, bytes], Any]
    max_line_bytes: int = MAX_LINE_BYTES
