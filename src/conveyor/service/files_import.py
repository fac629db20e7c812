"""Importing the files folder of an earlier Conveyor into the job store (``conveyor db upgrade``).

Before files and batch records lived in the store, each ``conveyor serve`` kept them in its
files folder (``files_dir``), one folder per tenant named by a hash of the tenant's name:

- ``file-<id>.json`` (the file's record) and ``file-<id>.jsonl`` (its bytes); a record without
  its bytes, or a ``.file-<id>.part``, is an upload that never finished: not imported;
- ``batch_<id>.json``: an OpenAI batch's record; ``msgbatch_<id>.json``: a Message Batch's.

`import_folder` copies all of it into the store, over the transaction's connection (so it
runs in the transaction of the migration that makes the tables: `upgrade_store`), reading
each file a chunk at a time. Its tenants are found by their folder's hash among the tenants
it is told of (the keys file's), the tenants of the store's jobs, and ``default``; a folder of
no known tenant refuses the whole import, naming the folder and the fix: nothing is written.
What is in the store already (an id imported before) is passed over, so it can run again.

The folder is left as it was, whatever happens: after an import that worked, it is the copy
an operator may keep to go back to the earlier version, and removing what may be another
instance's folder is not a database migration's to do. A mark (`MARK`) written into it then
says it was imported, so that `warn_unimported` (at the service's start) stays quiet.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..jobs.errors import StoreError
from ..jobs.file_model import CHUNK_BYTES, StoredFile
from ..jobs.stores.file_rules import FileRules
from .batches import BatchRecord
from .message_batch_records import MessageBatchRecord

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from pathlib import Path

    from ..jobs.file_model import BatchRow
    from ..jobs.stores.connector import Connection

__all__ = [
    "MARK",
    "Imported",
    "import_folder",
    "mark_imported",
    "tenant_folder",
    "warn_unimported",
]

logger = logging.getLogger("conveyor.service")
#: Written into the files folder once it was imported.
MARK = "IMPORTED-INTO-THE-JOB-STORE.txt"
_FOLDER = re.compile(r"^[0-9a-f]{24}$")
_FILE = re.compile(r"^file-[0-9a-f]{32}\.json$")
_BATCH = re.compile(r"^batch_[0-9A-Za-z]{1,58}\.json$")
_MESSAGE_BATCH = re.compile(r"^msgbatch_[0-9a-f]{32}\.json$")


@dataclass
class Imported:
    """What an import copied into the store, and what it passed over."""

    files: int = 0
    batches: int = 0
    message_batches: int = 0
    #: Already in the store (an earlier import).
    present: int = 0
    #: Records that could not be read (the earlier service did not show them either).
    unreadable: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for the operator."""
        text = (
            f"{self.files} file(s), {self.batches} batch(es), {self.message_batches} message"
            f" batch(es) imported; {self.present} already in the store"
        )
        if self.unreadable:
            shown = ", ".join(self.unreadable[:5]) + (" ..." if len(self.unreadable) > 5 else "")
            text += f"; {len(self.unreadable)} unreadable record(s) passed over: {shown}"
        return text


def tenant_folder(tenant: str) -> str:
    """The name of a tenant's folder in an earlier files folder (a hash: names never paths)."""
    return hashlib.sha256(tenant.encode()).hexdigest()[:24]


def _holds(folder: Path) -> bool:
    return any(
        _FILE.match(p.name) or _BATCH.match(p.name) or _MESSAGE_BATCH.match(p.name)
        for p in folder.iterdir()
    )


def _folders(root: Path) -> list[Path]:
    """The tenant folders under `root` that hold something to import."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and _FOLDER.match(p.name)]
    return sorted(p for p in found if _holds(p))


def _chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as data:
        while chunk := data.read(CHUNK_BYTES):
            yield chunk


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None


# The import runs in a migration's transaction, where work on SQLite must not suspend: the
# folder is read with plain blocking calls (a command-line upgrade, not the service).


def _stored_files(folder: Path, tenant: str, out: Imported) -> Iterator[tuple[StoredFile, Path]]:
    """Each whole file of the folder, and the path of its bytes."""
    for meta in sorted(p for p in folder.iterdir() if _FILE.match(p.name)):
        data = meta.with_suffix(".jsonl")
        if not data.is_file():
            continue  # an upload that never finished
        info = _read(meta)
        try:
            file = StoredFile(
                str(info["id"]),
                tenant,
                str(info.get("filename", "")),
                str(info.get("purpose", "")),
                data.stat().st_size,
                int(info["items"]),
                0,
                float(info["created_at"]),
            )
        except (TypeError, KeyError, ValueError):
            out.unreadable.append(str(meta))
            continue
        yield file, data


def _batch_rows(folder: Path, tenant: str, out: Imported) -> Iterator[BatchRow]:
    """Each batch record of the folder (OpenAI's and Anthropic's), as a row."""
    for path in sorted(folder.iterdir()):
        openai = _BATCH.match(path.name) is not None
        if not openai and not _MESSAGE_BATCH.match(path.name):
            continue
        try:
            if openai:
                yield BatchRecord(**json.loads(path.read_text("utf-8"))).to_row(tenant)
            else:
                yield MessageBatchRecord.from_json(path.read_text("utf-8")).to_row(tenant)
        except (OSError, ValueError, TypeError, KeyError):
            out.unreadable.append(str(path))


async def _import_tenant(
    c: Connection, rules: FileRules, folder: Path, tenant: str, out: Imported
) -> None:
    for file, data in _stored_files(folder, tenant, out):
        if await rules.add_whole(c, file, _chunks(data)):
            out.files += 1
        else:
            out.present += 1
    for row in _batch_rows(folder, tenant, out):
        if not await rules.add_batch(c, row):
            out.present += 1
        elif row.kind == "openai":
            out.batches += 1
        else:
            out.message_batches += 1


async def import_folder(c: Connection, root: Path, tenants: Iterable[str] = ()) -> Imported:
    """Copy the files folder `root` of an earlier version into the store, over `c`.

    `tenants`: the tenants to look for besides ``default`` and those of the store's jobs (the
    keys file's). Raises `StoreError`, having written nothing it will keep (the caller's
    transaction rolls back), for a tenant folder that belongs to none of them.
    """
    rules = FileRules()
    known = {"default", *tenants, *await rules.known_tenants(c)}
    by_folder = {tenant_folder(t): t for t in known}
    folders = _folders(root)
    strangers = [p.name for p in folders if p.name not in by_folder]
    if strangers:
        msg = (
            f"the files folder {str(root)!r} holds the files of tenants this store does not"
            f" know (folders {', '.join(strangers)}): pass the keys file that names them"
            " (--keys-file), then run the upgrade again; nothing was imported"
        )
        raise StoreError(msg)
    out = Imported()
    for folder in folders:
        tenant = by_folder[folder.name]
        await _import_tenant(c, rules, folder, tenant, out)
    return out


def mark_imported(root: Path, store: str, imported: Imported) -> None:
    """Write `MARK` into `root`: its content is in `store` (shown without its password)."""
    text = (
        f"The content of this folder was imported into the job store {store}\n"
        f"by `conveyor db upgrade` ({imported.summary()}).\n"
        "The service reads it from the store now; this folder is kept as it was, for going\n"
        "back to the earlier version. Remove it once that is no longer wanted.\n"
    )
    (root / MARK).write_text(text, "utf-8")


def warn_unimported(root: Path) -> bool:
    """Log a warning if `root` holds an earlier version's files not yet imported; whether so."""
    try:
        if (root / MARK).exists() or not _folders(root):
            return False
    except OSError:
        return False
    logger.warning(
        "conveyor service: the files folder %s holds uploads or batches of an earlier"
        " version, which this one keeps in the job store: import them with `conveyor db"
        " upgrade --store <url> --files-dir %s` (until then they are not found)",
        root,
        root,
    )
    return True
