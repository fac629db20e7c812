"""Uploaded JSONL files: streamed to disk as they arrive, checked line by line, per tenant.

``POST /v1/files`` writes the body chunk by chunk to a temporary file, checking each complete
line is JSON and counting them, and stops at ``max_file_bytes`` (413): memory holds one chunk
and one line at a time, never the file. The file is then renamed into place, so a job never
sees half a file. A job made from it (``file_id``) reads its items lazily, line by line. An
upload that fails or is cancelled (the client went away) removes its part file and any trace
of the file at once; one whose process was killed is removed at the next start (`.parts`).

OpenAI's Files API shares the store: an upload with ``purpose=batch`` (multipart) is kept as
it is, unchecked, since a malformed line must become a per-line error of the batch made from
it, as OpenAI answers it; the batches' output and error files are written here too.

Each tenant has its own folder, named by a hash of the tenant (tenant names never become
paths), and ids are checked against their pattern before any path is built: another
tenant's file id, or a made-up one, is simply not found.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import re
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from .._json import BadJSON, loads
from .parts import open_part, sweep_parts
from .problems import Problem

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator
    from pathlib import Path
    from typing import BinaryIO

__all__ = ["FileInfo", "Files"]

_T = TypeVar("_T")
FILE_ID = re.compile(r"^file-[0-9a-f]{32}$")
#: One line (one item) may not be longer than this while uploading.
MAX_LINE_BYTES = 16 * 1024 * 1024


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
        """As OpenAI's Files API shows a file."""
        return {
            "id": self.id,
            "object": "file",
            "bytes": self.bytes,
            "created_at": int(self.created_at),
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "expires_at": None,
            "status_details": None,
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
    """Splits a byte stream into lines and checks each is JSON (blank lines are skipped)."""

    def __init__(self) -> None:
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
        self.items += 1

    def close(self) -> None:
        if self.partial:
            self._check(self.partial)
            self.partial = b""


async def _settled(call: Callable[[], _T]) -> _T:
    """Run `call` in a thread; if cancelled meanwhile, let it finish before raising.

    The upload's clean-up then never races a write, a rename or a close still running in the
    thread (which cancelling the await does not stop).
    """
    running = asyncio.ensure_future(asyncio.to_thread(call))
    try:
        return await asyncio.shield(running)
    except asyncio.CancelledError:
        with contextlib.suppress(BaseException):
            await running
        raise


async def _copy(
    chunks: AsyncIterator[bytes], out: BinaryIO, checker: _LineChecker | _Counter, max_bytes: int
) -> int:
    """Write and check the chunks; return the size. `Problem` 413 or 422 on the way."""
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > max_bytes:
            msg = (
                f"the file is over max_file_bytes={max_bytes:,}: split it into several jobs,"
                " or ask the operator to raise [limits] max_file_bytes"
            )
            raise Problem(413, msg)
        checker.feed(chunk)
        await _settled(functools.partial(out.write, chunk))
    checker.close()
    if checker.items == 0 and isinstance(checker, _LineChecker):
        raise Problem(422, "the file has no items: send one JSON value per line")
    return size


class Files:
    """The uploaded files under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def sweep(self) -> int:
        """Remove the part files of uploads whose process died (`.parts`); return how many."""
        return sweep_parts(self.root)

    def _dir(self, tenant: str) -> Path:
        return self.root / hashlib.sha256(tenant.encode()).hexdigest()[:24]

    def folder(self, tenant: str) -> Path:
        """The tenant's own folder (other records, like batches, are kept beside its files)."""
        return self._dir(tenant)

    async def save(
        self,
        tenant: str,
        chunks: AsyncIterator[bytes],
        *,
        max_bytes: int,
        filename: str = "",
        purpose: str = "",
    ) -> FileInfo:
        """Stream `chunks` to a new file; `Problem` 413 past `max_bytes`, 422 on a bad line.

        With a `purpose` (OpenAI's Files API), lines are counted but not checked.
        """
        folder = self._dir(tenant)
        await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
        file_id = f"file-{uuid.uuid4().hex}"
        tmp = folder / f".{file_id}.part"
        meta_path, data_path = folder / f"{file_id}.json", folder / f"{file_id}.jsonl"
        checker: _LineChecker | _Counter = _Counter() if purpose else _LineChecker()
        # Created and locked here, not in a thread: a cancelled await cannot leave it behind.
        out = open_part(tmp)
        try:
            size = await _copy(chunks, out, checker, max_bytes)
            info = FileInfo(file_id, size, checker.items, time.time(), filename, purpose)
            meta = json.dumps(info.to_dict())

            def commit() -> None:
                # The metadata first, then the data renamed into place, the part still locked
                # (a sweeper then sees either a live part or the whole file, never neither).
                meta_path.write_text(meta, "utf-8")
                tmp.replace(data_path)
                out.close()

            await _settled(commit)
        except BaseException:
            # Failed or cancelled, at any step: no part, and no half-made file, is left.
            out.close()
            for path in (tmp, data_path, meta_path):
                with contextlib.suppress(OSError):
                    path.unlink(missing_ok=True)
            raise
        return info

    def info(self, tenant: str, file_id: str) -> FileInfo | None:
        """The file's record, or ``None`` (a bad id, another tenant's, or gone)."""
        if not FILE_ID.match(file_id):
            return None
        try:
            data = json.loads((self._dir(tenant) / f"{file_id}.json").read_text("utf-8"))
        except (OSError, ValueError):
            return None
        if not (self._dir(tenant) / f"{file_id}.jsonl").exists():
            return None
        return FileInfo(
            data["id"],
            data["bytes"],
            data["items"],
            data["created_at"],
            data.get("filename", ""),
            data.get("purpose", ""),
        )

    def list(self, tenant: str, purpose: str | None = None) -> list[FileInfo]:
        """The tenant's files (of `purpose`, if given), newest first."""
        found = []
        for meta in self._dir(tenant).glob("file-*.json"):
            info = self.info(tenant, meta.stem)
            if info is not None and (purpose is None or info.purpose == purpose):
                found.append(info)
        found.sort(key=lambda f: (f.created_at, f.id), reverse=True)
        return found

    def path(self, tenant: str, file_id: str) -> Path:
        """Where the file's bytes are (call only after `info` found it)."""
        return self._dir(tenant) / f"{file_id}.jsonl"

    def delete(self, tenant: str, file_id: str) -> bool:
        """Remove the file; return whether there was one."""
        if self.info(tenant, file_id) is None:
            return False
        (self._dir(tenant) / f"{file_id}.jsonl").unlink(missing_ok=True)
        (self._dir(tenant) / f"{file_id}.json").unlink(missing_ok=True)
        return True

    def items(self, tenant: str, file_id: str) -> Iterator[Any]:
        """The file's items, read line by line (call only after `info` found it)."""
        with (self._dir(tenant) / f"{file_id}.jsonl").open("rb") as lines:
            for raw in lines:
                if raw.strip():
                    yield loads(raw)  # checked when uploaded
