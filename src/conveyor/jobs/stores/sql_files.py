"""Reading a dialect's SQL files: named queries, and versioned migrations.

Each dialect has a folder under ``sql/`` (``sqlite/``, ``postgres/``) holding ``queries.sql``,
the statements by name (each after a line ``-- name: <name>``), and ``migrations/``, the
files ``NNNN_name.sql`` numbered 1..N with no gap.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

__all__ = ["read_migrations", "read_queries"]

_MIGRATION = re.compile(r"^(\d{4})_\w+\.sql$")
_QUERY_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


def read_queries(folder: Traversable) -> dict[str, str]:
    """The statements of ``queries.sql`` in `folder`, by name (comments before a name kept)."""
    text = (folder / "queries.sql").read_text(encoding="utf-8")
    parts = _QUERY_NAME.split(text)
    return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}


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
