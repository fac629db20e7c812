"""Reading a store's versioned migrations: ``NNNN_name.sql`` files, numbered 1..N with no gap."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

__all__ = ["read_migrations"]

_NAME = re.compile(r"^(\d{4})_\w+\.sql$")


def read_migrations(folder: Traversable) -> tuple[tuple[int, str], ...]:
    """``(version, script)`` for every migration file in `folder`, in order."""
    found: list[tuple[int, str]] = []
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.read_text(encoding="utf-8")))
    found.sort()
    versions = [v for v, _ in found]
    assert versions == list(range(1, len(found) + 1)), f"migrations must be 1..N: {versions}"
    return tuple(found)
