"""Opening a SQLite store file safely: identify it, refuse what is not ours, migrate.

A Conveyor database carries ``PRAGMA application_id = 0x434E5659`` ("CNVY") and its schema
version in ``PRAGMA user_version``. Migrations are the files ``sql/sqlite/migrations/NNNN_*.sql``:
version N is reached by applying each file up to N in order, each in one transaction with the
version bump, so a crash mid-migration leaves the previous version intact.

Before anything is written, an existing file is probed read-only: a file that is not SQLite,
a SQLite database of another application, or a Conveyor database from a newer schema raises
`StoreError` and the file is left byte for byte as it was.
"""

from __future__ import annotations

import sqlite3
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING

from ..errors import StoreError
from .sql_files import read_migrations, read_queries

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

__all__ = ["APPLICATION_ID", "LATEST_VERSION", "connect", "migrations", "queries"]

APPLICATION_ID = 0x434E5659  # "CNVY"
_SQL = resources.files("conveyor.jobs") / "sql"


@cache
def queries() -> dict[str, str]:
    """The named statements of ``sql/common/`` and ``sql/sqlite/queries.sql``."""
    return read_queries(_SQL, "sqlite", prefix="")


@cache
def migrations() -> tuple[tuple[int, str], ...]:
    """``(version, script)`` for every migration file, in order."""
    return read_migrations(_SQL / "sqlite" / "migrations")


LATEST_VERSION = len(migrations())


def _statements(script: str) -> list[str]:
    """Split a script into statements (``executescript`` would commit on its own)."""
    out: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            out.append(buffer.strip())
            buffer = ""
    assert not buffer.strip() or buffer.strip().startswith("--"), "incomplete SQL statement"
    return out


def probe(path: Path) -> None:
    """Refuse, without writing, a file that is not a usable Conveyor database."""
    if not path.exists() or path.stat().st_size == 0:
        return
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        msg = f"cannot open the job store {str(path)!r}: {exc}"
        raise StoreError(msg) from exc
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        msg = (
            f"{str(path)!r} is not a Conveyor job store (not a SQLite database: {exc});"
            " pass the path of a new or existing Conveyor store, e.g. sqlite:///jobs.db"
        )
        raise StoreError(msg) from exc
    finally:
        conn.close()
    if app_id != APPLICATION_ID and (app_id != 0 or tables):
        msg = (
            f"{str(path)!r} is a SQLite database of another application, not a Conveyor job"
            " store; nothing was written to it. Pass a new file's path for the store."
        )
        raise StoreError(msg)
    if version > LATEST_VERSION:
        msg = (
            f"{str(path)!r} has job store schema version {version}, newer than this Conveyor"
            f" knows ({LATEST_VERSION}): it was written by a newer Conveyor; upgrade this one"
            " (pip install -U conveyor). Nothing was written."
        )
        raise StoreError(msg)


def connect(path: Path, *, read_only: bool = False) -> sqlite3.Connection:
    """Open a connection (autocommit: transactions are explicit), after `probe`."""
    if read_only:
        conn = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=ro",
            uri=True,
            isolation_level=None,
            check_same_thread=False,
        )
    else:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    # Several processes share the file: wait for the write lock rather than fail at once.
    conn.execute("PRAGMA busy_timeout = 10000")
    if not read_only:
        # WAL: readers never block the writer nor wait for it. synchronous=NORMAL in WAL mode
        # loses no committed transaction when the *process* dies (only on power loss can the
        # last commits roll back), and saves an fsync per transaction.
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA cache_size = -16000")  # 16 MB of page cache per connection
    return conn


def migrate(
    conn: sqlite3.Connection, then: Callable[[sqlite3.Connection], object] | None = None
) -> int:
    """Bring the schema up to `LATEST_VERSION`; return the version found before.

    `then` (an import of data into the new tables) runs in one transaction with every
    migration due: if it fails, they are rolled back with it, and the file stays at the
    version it had (the tables it needs may come from any of the migrations).
    """
    before = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if then is not None:
        _migrate_with(conn, then)
        return before
    done = then is None
    for version, script in migrations():
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have migrated while this one waited for the lock.
            current = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if current >= version:
                conn.execute("COMMIT")
                continue
            for statement in _statements(script):
                conn.execute(statement)
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {version}")
            if version == LATEST_VERSION and then is not None:
                then(conn)
                done = True
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    if not done and then is not None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            then(conn)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return before


def _migrate_with(conn: sqlite3.Connection, then: Callable[[sqlite3.Connection], object]) -> None:
    """Every migration due and `then`, in one transaction."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        current = int(conn.execute("PRAGMA user_version").fetchone()[0])
        for version, script in migrations():
            if current >= version:
                continue
            for statement in _statements(script):
                conn.execute(statement)
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {version}")
        then(conn)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
