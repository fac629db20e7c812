"""The results file: opened and locked for one run, read back on resume, appended to line by line.

The invariants, which resume relies on:

- A result is written as whole lines in one ``write`` call, on a file opened for appending
  by this run alone (an exclusive lock refuses a second run on the same file). A kill -9 can
  therefore leave at most the *last* line torn (no newline at its end); the next start finds
  it and cuts it off, and its request runs again.
- In a running event loop, the results that settle in one pass of the loop are written
  together, at the end of that pass (one system call for many results, not one each: a tenth
  of the batch runner's CPU per request, `bench/http.py` scenario 4). A result is on its way
  to the file for less than one pass; one a kill -9 catches there is not in the file, so its
  request runs again on resume, as one in flight would.
- A custom_id is in the file at most once at every moment. ``--retry-failed`` does not append
  a second line for a failed request: it first rewrites the file without the failed results
  (to a temporary file, flushed to disk, then renamed over the old one atomically), so those
  requests are simply missing and run again like any request not yet done.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .._json import loads
from .errors import OutputError

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

__all__ = ["Loaded", "ResultFile", "check_writable", "write_text_atomic"]


# Result lines start with these two fields, in this order (results.py writes them so): resume
# reads just them, not the answers after them, which makes reading back a million results
# several times faster.
_HEAD = b'{"custom_id":'
_ERROR = ',"error":'
_decode = json.JSONDecoder().raw_decode
#: Results kept for the end of the loop's pass at most: past this many, they are written now.
_PENDING_MAX = 512


def _read_head(raw: bytes) -> tuple[str, bool] | None:
    """The custom_id and success of a result line that starts as written here, else None."""
    if not raw.startswith(_HEAD):
        return None
    try:
        text = raw.decode()
        custom_id, end = _decode(text, len(_HEAD))
        if not text.startswith(_ERROR, end):
            return None
        error, _ = _decode(text, end + len(_ERROR))
    except (ValueError, RecursionError):  # not as written here: the whole line is read
        return None
    return (custom_id, error is None) if isinstance(custom_id, str) else None


def _lock(fd: int, path: Path) -> None:
    """Take an exclusive lock on the open file, or refuse: another run is writing it."""
    try:
        import fcntl  # noqa: PLC0415 - POSIX only; elsewhere the file is not locked
    except ImportError:  # pragma: no cover - Windows
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        msg = (
            f"another conveyor run is writing {path}: wait for it to finish, or write to"
            " another file with -o"
        )
        raise OutputError(msg) from None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform can open a directory
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@dataclass(frozen=True, slots=True)
class Loaded:
    """What reading the results file back found."""

    results: int  # result lines kept
    dropped: int  # failed results removed for --retry-failed
    torn_bytes: int  # bytes of a torn last line cut off (0: none)


class ResultFile:
    """The results file of one run. Use `open`, then `load`, then `write` each result."""

    __slots__ = ("_failed", "_fd", "_pending", "_unheard", "path", "written")

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd
        self.written = 0
        # Results waiting for the end of the loop's pass, and why writing them failed, if it did.
        self._pending: list[str] = []
        self._failed: OutputError | None = None
        self._unheard = False  # it failed at the end of a pass, and no caller was told yet

    @classmethod
    def open(cls, path: Path) -> ResultFile:
        """Open `path` for appending (creating it) and lock it; `OutputError` if impossible."""
        try:
            if path.is_dir():
                msg = (
                    f"-o {path} is a directory: give a file name, e.g. -o {path / 'results.jsonl'}"
                )
                raise OutputError(msg)
            if not path.parent.is_dir():
                msg = f"cannot write {path}: the folder {path.parent} does not exist; create it"
                raise OutputError(msg)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o666)
        except OSError as exc:
            msg = (
                f"cannot write {path}: {exc.strerror}; choose another -o path or fix the"
                " file's permissions"
            )
            raise OutputError(msg) from None
        _lock(fd, path)
        return cls(path, fd)

    def load(
        self,
        seen: Callable[[str, bool], None],
        *,
        drop: Callable[[str, bool], bool] | None = None,
    ) -> Loaded:
        """Read every result back: ``seen(custom_id, ok)`` for each one kept.

        A torn last line is cut off. With `drop`, results for which ``drop(custom_id, ok)``
        is true are removed, by rewriting the file atomically (only if there are any).
        """
        try:
            rewrite = _Rewrite(self) if drop is not None else None
        except OSError as exc:
            msg = (
                f"cannot rewrite {self.path} without its failed results: {exc.strerror}"
                f" ({exc.filename}); check that its folder is writable"
            )
            raise OutputError(msg) from None
        results = dropped = 0
        offset = 0
        torn = 0
        try:
            with self.path.open("rb") as lines:
                for number, raw in enumerate(lines, 1):
                    if not raw.endswith(b"\n"):
                        torn = len(raw)  # only the last line can lack its newline
                        break
                    custom_id, ok = self._parse(raw, number)
                    if drop is not None and drop(custom_id, ok):
                        dropped += 1
                        continue
                    results += 1
                    seen(custom_id, ok)
                    offset += len(raw)
                    if rewrite is not None:
                        rewrite.add(raw)
            if rewrite is not None and (dropped or torn):
                self._fd = rewrite.commit()
            elif torn:
                os.ftruncate(self._fd, offset)
        except OSError as exc:
            msg = f"cannot read back {self.path}: {exc.strerror}; check the file"
            raise OutputError(msg) from None
        finally:
            if rewrite is not None:
                rewrite.discard()
        return Loaded(results=results, dropped=dropped, torn_bytes=torn)

    def _parse(self, raw: bytes, number: int) -> tuple[str, bool]:
        found = _read_head(raw)
        if found is not None:
            return found
        try:  # not in the order this module writes: read the whole line
            record = loads(raw)  # BadJSON is a ValueError
            custom_id = record["custom_id"]
            ok = record["error"] is None
        except (ValueError, KeyError, TypeError):
            custom_id = None
        if not isinstance(custom_id, str):
            msg = (
                f"{self.path} line {number} is not a result of conveyor run: is it another"
                " file? Choose another -o path, or remove that line"
            )
            raise OutputError(msg)
        return custom_id, ok

    def write(self, line: str) -> None:
        """Append one result (a JSON line without its newline): whole, with those around it.

        In a running event loop the line is written at the end of the loop's pass, with every
        other result of that pass (`flush` writes them at once); `OutputError` says a write
        failed, here or at the next call after a pass's write failed.
        """
        if self._failed is not None:
            self._unheard = False
            raise self._failed
        pending = self._pending
        pending.append(line)
        self.written += 1
        if len(pending) == 1:
            loop = asyncio._get_running_loop()  # noqa: SLF001 - public in effect; None if none
            if loop is not None:
                loop.call_soon(self._flush_soon)
                return
        elif len(pending) < _PENDING_MAX:
            return
        self.flush()

    def flush(self) -> None:
        """Write the results not written yet, in one system call; `OutputError` if it fails."""
        if self._failed is not None:
            self._unheard = False
            raise self._failed
        pending = self._pending
        if not pending:
            return
        pending.append("")  # the last line's newline
        data = "\n".join(pending).encode()
        pending.clear()
        try:
            _write_all(self._fd, data)
        except OSError as exc:
            msg = (
                f"writing {self.path} failed: {exc.strerror}; the results written so far are"
                " kept: fix the cause and run the same command again to resume"
            )
            self._failed = OutputError(msg)
            raise self._failed from None

    def _flush_soon(self) -> None:
        # At the end of the pass nobody is there to hear of a failure: the next `write` (or
        # `close`) raises it.
        try:
            self.flush()
        except OutputError:
            self._unheard = True

    def close(self) -> None:
        """Write what is pending, flush the file to disk, unlock and close it.

        Raises `OutputError` if the results pending could not be written (the file is closed).
        """
        if self._fd < 0:
            return
        try:
            if self._failed is None:
                self.flush()
            with contextlib.suppress(OSError):
                os.fsync(self._fd)
        finally:
            os.close(self._fd)
            self._fd = -1
        if self._failed is not None and self._unheard:
            self._unheard = False
            raise self._failed


class _Rewrite:
    """The results file being rewritten without some results: a locked temporary file."""

    __slots__ = ("_buffer", "_fd", "_owner", "_tmp")

    def __init__(self, owner: ResultFile) -> None:
        self._owner = owner
        self._tmp = owner.path.with_name(f".{owner.path.name}.conveyor-tmp")
        mode = os.fstat(owner._fd).st_mode & 0o777  # noqa: SLF001 - its owner's file
        # A temporary file left by a run killed mid-rewrite is overwritten: the results file
        # is locked by this run, so no other run is rewriting it.
        self._fd = os.open(self._tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND, mode)
        _lock(self._fd, self._tmp)
        self._buffer: list[bytes] = []

    def add(self, raw: bytes) -> None:
        self._buffer.append(raw)
        if len(self._buffer) >= 1024:
            self._flush()

    def _flush(self) -> None:
        _write_all(self._fd, b"".join(self._buffer))
        self._buffer.clear()

    def commit(self) -> int:
        """Replace the results file by the rewritten one; return its (locked) descriptor."""
        self._flush()
        os.fsync(self._fd)
        self._tmp.replace(self._owner.path)
        _fsync_dir(self._owner.path.parent)
        os.close(self._owner._fd)  # noqa: SLF001 - its owner's file; releases the old lock
        fd, self._fd = self._fd, -1
        return fd

    def discard(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
            with contextlib.suppress(FileNotFoundError):
                self._tmp.unlink()


def check_writable(path: Path, what: str) -> None:
    """Refuse a path that cannot be written, before anything is sent."""
    try:
        if path.is_dir():
            msg = f"{what} {path} is a directory: give a file name"
            raise OutputError(msg)
        target = path if path.exists() else path.parent
        if not target.exists():
            msg = f"cannot write {what} {path}: the folder {path.parent} does not exist"
            raise OutputError(msg)
        writable = os.access(target, os.W_OK)
    except OSError as exc:
        msg = f"cannot write {what} {path}: {exc.strerror}; choose another path"
        raise OutputError(msg) from None
    if not writable:
        msg = f"cannot write {what} {path}: permission denied; choose another path"
        raise OutputError(msg)


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file and a rename: never half a file."""
    tmp = path.with_name(f".{path.name}.conveyor-tmp")
    tmp.write_text(text)
    tmp.replace(path)
