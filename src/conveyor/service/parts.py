"""Partial uploads (``.file-<id>.part``): each held by its writer, and removed once orphaned.

An upload is streamed to a part file that is renamed into place when whole (`files.Files.save`).
A process killed mid-upload (``kill -9``, a crash, a power cut) never removes its part, and
nothing else would: the folder would fill with them. Several ``conveyor serve`` processes may
share the files folder, so a part on disk may also be another process's upload in progress.
What tells them apart is a lock:

- `open_part` creates the part and takes an exclusive ``flock`` on it before a byte is written;
  the writer holds it until the part is renamed into place or removed. The operating system
  releases it when the process dies, however it dies.
- `sweep_parts` (at the service's start) takes each part's lock without waiting: a part whose
  lock it gets has no live writer and is removed, with the metadata of its file if the file
  never came to be; a part whose lock is held is another process's upload, and is left alone.

The lock is checked on the path after it is taken, both ways: a sweeper that took the lock of
a part already renamed or replaced removes nothing, and a writer whose new part was swept
between its creation and its lock makes it again. Where ``flock`` does not exist (Windows),
an open file cannot be deleted: the sweeper's unlink fails on a part being written, which is
the same answer. On a network file system, the lock holds across machines only if the file
system supports locks (NFS with its lock service does); otherwise share no files folder there.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path
    from typing import BinaryIO

try:  # POSIX; elsewhere an open file is protected from deletion instead (see above)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["PART_GLOB", "open_part", "sweep_parts"]

#: The part files of every tenant folder under the files root.
PART_GLOB = "*/.file-*.part"
logger = logging.getLogger("conveyor.service")


def _same_file(fd: int, path: Path) -> bool:
    """Whether `path` still names the open file `fd` (not removed, renamed or replaced)."""
    try:
        on_disk = path.stat()
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (on_disk.st_dev, on_disk.st_ino) == (held.st_dev, held.st_ino)


def open_part(path: Path) -> BinaryIO:
    """Create the part file `path` and lock it; the caller writes it and closes it (unlock)."""
    while True:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        if fcntl is None:  # pragma: no cover - Windows
            break
        # Blocks only while a sweeper holds it, for the microseconds it takes to look.
        fcntl.flock(fd, fcntl.LOCK_EX)
        if _same_file(fd, path):
            break
        # A sweeper found it unlocked and removed it before the lock was taken: again.
        os.close(fd)  # pragma: no cover - a race of microseconds
    return os.fdopen(fd, "wb")


def _orphan(path: Path) -> bool:
    """Remove the part `path` if no live writer holds it; whether it was removed."""
    if fcntl is None:  # pragma: no cover - Windows: unlink fails on a file open elsewhere
        try:
            path.unlink()
        except (FileNotFoundError, PermissionError):
            return False
        return True
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:  # renamed into place or removed meanwhile
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a live upload, maybe another process's
        if not _same_file(fd, path):
            return False
        path.unlink()
        return True
    finally:
        os.close(fd)


def sweep_parts(root: Path) -> int:
    """Remove the orphaned part files under the files `root`; return how many.

    A part's file id names its metadata (``file-<id>.json``): written just before the part is
    renamed into place, it is removed too when the file itself (``.jsonl``) does not exist.
    """
    removed = 0
    for path in sorted(root.glob(PART_GLOB)):
        try:
            if not _orphan(path):
                continue
        except OSError as exc:
            logger.warning("conveyor service: cannot remove the partial upload %s: %s", path, exc)
            continue
        removed += 1
        file_id = path.name.removeprefix(".").removesuffix(".part")
        if not (path.parent / f"{file_id}.jsonl").exists():
            with contextlib.suppress(OSError):
                (path.parent / f"{file_id}.json").unlink(missing_ok=True)
    if removed:
        logger.info(
            "conveyor service: removed %d partial upload(s) left by a stopped process", removed
        )
    return removed
