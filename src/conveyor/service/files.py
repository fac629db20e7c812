"""Uploaded JSONL files, in the job store: streamed in as they arrive, checked, per tenant.

``POST /v1/files`` writes the body to the store chunk by chunk (`conveyor.jobs.store.FileStore`,
1 MiB chunks, each in a transaction of its own), checking each complete line is JSON and
counting them, and stops at ``max_file_bytes`` (413): memory holds a chunk and a line at a
time, never the file. The file becomes visible whole, in one step, once its last chunk is
written: no reader, on any service instance, ever sees half of it. A job made from it
(``file_id``) reads its lines in the transaction that creates the job.

An upload that fails (413, 422, the client gone, the store unreachable: a 503) or is cancelled
is removed at once, as far as the store can be reached; what is left of one whose process died
is removed by the sweep once it has been idle for `UPLOAD_IDLE_S` (`Files.sweep`).

OpenAI's Files API shares the store: an upload with ``purpose=batch`` (multipart) is kept as
it is, unchecked, since a malformed line must become a per-line error of the batch made from
it, as OpenAI answers it; the batches' output and error files are written here too
(`Files.write`: made visible with the batch's final state).

Each file belongs to its tenant, and every read names the tenant: another tenant's file id, or
a made-up one (checked against its pattern first), is simply not found.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import _clock
from .._json import BadJSON, loads
from ..errors import ConfigError
from ..jobs.errors import InvalidJob
from ..jobs.file_model import FileItems, StoredFile
from ..jobs.stores.file_rules import split_lines
from .problems import Problem

if TYPE_CHECKING:
    from collections.abc import AsyncIterable, AsyncIterator, Awaitable

    from ..jobs.file_model import Written
    from ..jobs.store import FileStore, Store
    from ..jobs.stores.file_manager import Upload

__all__ = ["UPLOAD_IDLE_S", "FileInfo", "Files", "file_store_of", "quietly"]

FILE_ID = re.compile(r"^file-[0-9a-f]{32}$")
#: One line (one item) may not be longer than this while uploading.
MAX_LINE_BYTES = 16 * 1024 * 1024
#: An upload that wrote no chunk for this long is given up and removed (its process died, or
#: its client sends less than a chunk an hour), in seconds.
UPLOAD_IDLE_S = 3600.0


@dataclass(frozen=True, slots=True)
class FileInfo:
    """An uploaded file."""

    id: str
    bytes: int
    items: int
    created_at: float
    #: The OpenAI Files API's fields: the upload's name and purpose (empty for job inputs).
    filename: str = ""
    purpose: str = ""

    @classmethod
    def of(cls, file: StoredFile) -> FileInfo:
        """The file as the store keeps it."""
        return cls(file.id, file.bytes, file.items, file.created_at, file.filename, file.purpose)

    def to_dict(self) -> dict[str, Any]:
        """As the API shows it."""
        data: dict[str, Any] = {
            "id": self.id,
            "bytes": self.bytes,
            "items": self.items,
            "created_at": self.created_at,
        }
        if self.purpose:
            data |= {"filename": self.filename, "purpose": self.purpose}
        return data

    def to_openai(self) -> dict[str, Any]:
        """As OpenAI's Files API shows a file, in the shape of OpenAI's OpenAPI document.

        A file never expires here, so ``expires_at`` and ``status_details`` are absent (the
        document allows no ``null`` for them). A job input, which has no purpose of OpenAI's,
        shows as ``user_data`` (OpenAI's purpose for any other file).
        """
        return {
            "id": self.id,
            "object": "file",
            "bytes": self.bytes,
            "created_at": int(self.created_at),
            "filename": self.filename,
            "purpose": self.purpose or "user_data",
            "status": "processed",
        }


class _Counter:
    """Counts the non-blank lines of a byte stream, checking nothing else (any line length)."""

    def __init__(self) -> None:
        self.items = 0
        self._open_has_text = False  # the line not yet ended has a non-blank byte

    def feed(self, chunk: bytes) -> None:
        *ended, rest = chunk.split(b"\n")
        for piece in ended:
            if self._open_has_text or piece.strip():
                self.items += 1
            self._open_has_text = False
        self._open_has_text = self._open_has_text or bool(rest.strip())

    def close(self) -> None:
        if self._open_has_text:
            self.items += 1
            self._open_has_text = False


class _LineChecker:
    """Splits a byte stream into lines and checks each is JSON (blank lines are skipped).

    `max_item_bytes`: the longest line a job takes as an item (`Jobs.max_item_bytes`).
    """

    def __init__(self, max_item_bytes: int = MAX_LINE_BYTES) -> None:
        self.max_item_bytes = max_item_bytes
        self.partial = b""
        self.line = 0
        self.items = 0

    def feed(self, chunk: bytes) -> None:
        data = self.partial + chunk
        lines = data.split(b"\n")
        self.partial = lines.pop()
        if len(self.partial) > MAX_LINE_BYTES:
            raise Problem(
                413, f"line {self.line + len(lines) + 1} is over {MAX_LINE_BYTES:,} bytes"
            )
        for raw in lines:
            self._check(raw)

    def _check(self, raw: bytes) -> None:
        self.line += 1
        if not raw.strip():
            return
        try:
            # NaN / Infinity are not JSON, a lone surrogate is not text, and nesting past
            # MAX_DEPTH is refused by any later reader: all refused here, naming the line.
            loads(raw)
        except BadJSON as exc:
            msg = f"line {self.line} {exc.problem} (the file must hold one JSON value per line)"
            raise Problem(422, msg) from None
        if len(raw) > self.max_item_bytes:
            size = _stored_size(raw)
            if size > self.max_item_bytes:
                msg = (
                    f"line {self.line} is {size:,} bytes of JSON, over max_item_bytes="
                    f"{self.max_item_bytes:,} (the largest item a job takes): store large"
                    " payloads elsewhere and pass a reference (a URL, a key)"
                )
                raise Problem(422, msg)
        self.items += 1

    def close(self) -> None:
        if self.partial:
            self._check(self.partial)
            self.partial = b""


def _stored_size(raw: bytes) -> int:
    """The bytes of a JSON line's value as a job stores it (compact JSON), for a long line."""
    return len(json.dumps(loads(raw), separators=(",", ":"), ensure_ascii=False).encode())


def _too_big(max_bytes: int) -> Problem:
    return Problem(
        413,
        f"the file is over max_file_bytes={max_bytes:,}: split it into several jobs, or ask the"
        " operator to raise [limits] max_file_bytes",
    )


async def _fill(
    upload: Upload,
    chunks: AsyncIterable[bytes],
    checker: _LineChecker | _Counter,
    max_bytes: int,
) -> None:
    """Write and check the chunks. `Problem` 413 or 422 on the way."""
    async for chunk in chunks:
        if upload.bytes + len(chunk) > max_bytes:
            raise _too_big(max_bytes)
        checker.feed(chunk)
        await upload.write(chunk)
    checker.close()
    if checker.items == 0 and isinstance(checker, _LineChecker):
        raise Problem(422, "the file has no items: send one JSON value per line")


async def quietly(step: Awaitable[object]) -> None:
    """Await a clean-up `step` to its end, even if cancelled meanwhile; its failure is let go.

    For what a failure leaves behind: the store may be gone (its sweep, or a lapse, mends
    it later), and the error that matters is the one being raised.
    """
    with contextlib.suppress(BaseException):
        await asyncio.shield(step)


async def _give_up(upload: Upload) -> None:
    """Remove a failed upload now, as far as the store can be reached (else the sweep will).

    Shielded: an upload cancelled (its client gone) still removes what it wrote.
    """
    await quietly(upload.discard())


def _parse_line(number: int, line: bytes) -> Any:
    """A job input's line as its item; `InvalidJob` naming the line if it is not JSON."""
    try:
        return loads(line)
    except BadJSON as exc:  # a multipart upload is kept unchecked: its lines are read here
        msg = f"line {number} of the file {exc.problem}: each line must be one JSON value"
        raise InvalidJob(msg) from None


def file_store_of(store: Store) -> FileStore:
    """The files and batch records kept beside `store`'s jobs (its ``files``)."""
    found: FileStore | None = getattr(store, "files", None)
    if found is None:
        msg = (
            f"the store {type(store).__name__} keeps no files: the service needs one of"
            " Conveyor's stores (MemoryStore, SqliteStore, PostgresStore, or a subclass)"
        )
        raise ConfigError(msg)
    return found


class Files:
    """The tenants' files in the job store's `FileStore` (see the module docstring)."""

    def __init__(self, store: FileStore) -> None:
        self.store = store

    async def sweep(self) -> int:
        """Remove the uploads idle for `UPLOAD_IDLE_S` (their process died); return how many."""
        return await self.store.sweep_uploads(idle_s=UPLOAD_IDLE_S)

    async def _upload(self, tenant: str, filename: str, purpose: str) -> Upload:
        file_id = f"file-{uuid.uuid4().hex}"
        return await self.store.upload(
            tenant, file_id, created_at=_clock.wall(), filename=filename, purpose=purpose
        )

    async def save(
        self,
        tenant: str,
        chunks: AsyncIterable[bytes],
        *,
        max_bytes: int,
        filename: str = "",
        purpose: str = "",
        max_item_bytes: int = MAX_LINE_BYTES,
    ) -> FileInfo:
        """Stream `chunks` into a new file; `Problem` 413 past `max_bytes`, 422 on a bad line.

        With a `purpose` (OpenAI's Files API), lines are counted but not checked. Without one
        (a job's input), a line past `max_item_bytes` is a bad line.
        """
        checker: _LineChecker | _Counter = _Counter() if purpose else _LineChecker(max_item_bytes)
        upload = await self._upload(tenant, filename, purpose)
        try:
            await _fill(upload, chunks, checker, max_bytes)
            stored = await upload.publish(items=checker.items)
        except BaseException:
            # Failed or cancelled, at any step: nothing of it is left to be seen.
            await _give_up(upload)
            raise
        return FileInfo.of(stored)

    async def write(
        self, tenant: str, lines: AsyncIterable[bytes], *, filename: str, purpose: str
    ) -> Written | None:
        """Write `lines` (whole lines) as a new file not yet visible; None if there are none.

        The file becomes visible with the change that publishes it (a batch's final state).
        """
        upload = await self._upload(tenant, filename, purpose)
        count = 0
        try:
            async for line in lines:
                count += 1
                await upload.write(line)
            written = await upload.close(items=count)
        except BaseException:
            await _give_up(upload)
            raise
        if count == 0:
            await upload.discard()
            return None
        return written

    async def discard(self, written: Written) -> None:
        """Remove a file written but not made visible."""
        await self.store.discard(written.id)

    async def info(self, tenant: str, file_id: str) -> FileInfo | None:
        """The file's record, or ``None`` (a bad id, another tenant's, or gone)."""
        if not FILE_ID.match(file_id):
            return None
        found = await self.store.file(tenant, file_id)
        return None if found is None else FileInfo.of(found)

    async def list(self, tenant: str, purpose: str | None = None) -> list[FileInfo]:
        """The tenant's files (of `purpose`, if given), newest first."""
        return [FileInfo.of(f) for f in await self.store.files(tenant, purpose=purpose)]

    async def delete(self, tenant: str, file_id: str) -> bool:
        """Remove the file; return whether there was one."""
        return FILE_ID.match(file_id) is not None and await self.store.delete_file(tenant, file_id)

    async def content(self, tenant: str, file_id: str) -> AsyncIterator[bytes]:
        """The file's bytes, a chunk at a time (nothing if there is no such file)."""
        found = await self.store.file(tenant, file_id) if FILE_ID.match(file_id) else None
        if found is None:
            return
        async for chunk in self.store.chunks(found):
            yield chunk

    def lines(self, tenant: str, file_id: str, max_line_bytes: int) -> AsyncIterator[bytes]:
        """The file's lines without their newline; of a longer one, its first bytes.

        See `conveyor.jobs.stores.file_rules.split_lines`: a line over `max_line_bytes` is
        given as its first ``max_line_bytes + 1`` bytes, so memory holds a chunk and a line.
        """
        return split_lines(self.content(tenant, file_id), max_line_bytes)

    @staticmethod
    def items(file_id: str) -> FileItems:
        """A job input file's lines as a job's items (read when the job is created)."""
        return FileItems(file_id, _parse_line, max_line_bytes=MAX_LINE_BYTES)
