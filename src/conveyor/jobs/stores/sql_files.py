"""Reading the job store's SQL files: named queries, and versioned migrations.

``sql/common/queries.sql`` holds the statements every dialect runs as they are; each dialect
has a folder under ``sql/`` (``sqlite/``, ``postgres/``) holding its own ``queries.sql`` and
``migrations/``, the files ``NNNN_name.sql`` numbered 1..N with no gap. In a ``queries.sql``
each statement follows a line ``-- name: <name>``.

A dialect's statements are the common ones with its own over them, by name: its file adds
what is its own, and may give its own form of a common statement. A common name with no
statement (comments only) is one that every dialect must write. The common statements name
their tables in braces (``{jobs}``), and the dialect gives its prefix for them (PostgreSQL's
tables are ``conveyor_jobs``, ...; a SQLite file holds Conveyor's tables only).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

__all__ = ["TABLES", "QueryFileError", "read_migrations", "read_queries"]

#: The job store's tables, as the common statements name them.
TABLES = frozenset({"jobs", "items", "workers", "files", "file_chunks", "batches", "job_rates"})

_MIGRATION = re.compile(r"^(\d{4})_\w+\.sql$")
_QUERY_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)
_TABLE = re.compile(r"\{(\w+)\}")


class QueryFileError(ValueError):
    """A ``queries.sql`` that cannot make a dialect's statements (a bug in the package)."""


def read_queries(sql: Traversable, dialect: str, *, prefix: str) -> dict[str, str]:
    """The statements of `dialect`, by name: ``common/`` with ``<dialect>/`` over it.

    `sql` is the ``sql`` folder; `prefix` goes before each table name of the common
    statements. Raises `QueryFileError` for a name written twice in one file, a common name
    left to the dialects that `dialect` does not write, or an unknown table.
    """
    common = _named(sql / "common" / "queries.sql")
    own = _named(sql / dialect / "queries.sql")
    missing = sorted(
        name for name, body in common.items() if not _has_sql(body) and name not in own
    )
    if missing:
        msg = (
            f"sql/{dialect}/queries.sql lacks {missing}:"
            " sql/common/queries.sql leaves them to each dialect"
        )
        raise QueryFileError(msg)
    return {name: _with_tables(body, prefix) for name, body in common.items()} | own


def _named(file: Traversable) -> dict[str, str]:
    """The statements of one ``queries.sql``, by name (comments after a name kept)."""
    parts = _QUERY_NAME.split(file.read_text(encoding="utf-8"))
    found: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in found:
            msg = f"{file}: the query {name!r} is written twice"
            raise QueryFileError(msg)
        found[name] = body.strip()
    return found


def _has_sql(body: str) -> bool:
    """Whether `body` holds a statement, not only comments."""
    return any(not line.lstrip().startswith("--") for line in body.splitlines() if line.strip())


def _with_tables(body: str, prefix: str) -> str:
    """`body` with each ``{table}`` named as the dialect names it."""

    def table(match: re.Match[str]) -> str:
        if match.group(1) not in TABLES:
            msg = f"sql/common/queries.sql: unknown table {match.group(0)} in {body!r}"
            raise QueryFileError(msg)
        return prefix + match.group(1)

    return _TABLE.sub(table, body)


def read_migrations(folder: Traversable) -> tuple[tuple[int, str], ...]:
    """``(version, script)`` for every migration file in `folder`, in order."""
    found: list[tuple[int, str]] = []
    for entry in folder.iterdir():
        match = _MIGRATION.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.read_text(encoding="utf-8")))
    found.sort()
    versions = [v for v, _ in found]
    assert versions == list(range(1, len(found) + 1)), f"migrations must be 1..N: {versions}"
    return tuple(found)
