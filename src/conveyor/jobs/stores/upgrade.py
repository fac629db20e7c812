"""`upgrade_store`: migrate a store's schema, with an import of data in the same transaction.

``conveyor db upgrade`` runs it. Each migration runs in its own transaction; `then` (an import
of what an earlier version kept elsewhere, e.g. the service's files folder) runs in the
transaction of the last one, or in one of its own when the schema was current already. So an
import that fails leaves the store as it was: at its old version, without a row of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import StoreError
from .connector import run_now
from .sqlite import check_place
from .sqlite_connection import SqliteConnection
from .sqlite_schema import LATEST_VERSION, connect, migrate, probe

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Callable, Coroutine

    from .connector import Connection

__all__ = ["upgrade_store"]


async def upgrade_store(
    url: str, *, then: Callable[[Connection], Coroutine[Any, Any, object]] | None = None
) -> tuple[int, int]:
    """Create or migrate the store at `url`; ``(version before, version after)``.

    ``postgresql://...`` or ``sqlite:///path`` (a path alone is a SQLite file). A store from a
    newer Conveyor, or a file that is not a Conveyor store, is refused (`StoreError`) before
    anything is written.
    """
    if url.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresStore  # noqa: PLC0415 - asyncpg only when used

        store = PostgresStore(url)
        try:
            return await store.upgrade(then=then)
        finally:
            await store.close()
    if url in {"memory:", "memory://"}:
        msg = "a memory: store lives in one process: there is nothing to upgrade"
        raise StoreError(msg)
    path = Path(url.removeprefix("sqlite://").removeprefix("/") if "://" in url else url)
    return _upgrade_sqlite(path, then)


def _upgrade_sqlite(
    path: Path, then: Callable[[Connection], Coroutine[Any, Any, object]] | None
) -> tuple[int, int]:
    check_place(path, create=True)
    probe(path)
    conn = connect(path)
    try:

        def imports(raw: sqlite3.Connection) -> object:
            assert then is not None
            # The import awaits only the connection's queries, which never suspend.
            return run_now(then(SqliteConnection(raw)))

        before = migrate(conn, imports if then is not None else None)
    finally:
        conn.close()
    return before, LATEST_VERSION
