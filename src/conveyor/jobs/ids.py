"""Sortable ids: UUIDv7 (RFC 9562), made from the time and `os.urandom`.

The first 48 bits are the Unix time in milliseconds, so ids sort by creation time (as text
too: they are lower-case hex), and ``ORDER BY id`` lists jobs oldest first without an index on
the creation time. The rest is random (74 bits), so ids made on several machines never collide
in practice.
"""

from __future__ import annotations

import os
import uuid

__all__ = ["new_id"]


def new_id(wall_s: float, *, random_bytes: bytes | None = None) -> str:
    """Return a new UUIDv7 as text, for the Unix time `wall_s`.

    >>> new_id(1_700_000_000.0, random_bytes=bytes(10))
    '018bcfe5-6800-7000-8000-000000000000'
    """
    millis = int(wall_s * 1000) & ((1 << 48) - 1)
    rand = int.from_bytes(random_bytes if random_bytes is not None else os.urandom(10))
    rand_a = (rand >> 62) & 0xFFF  # 12 bits
    rand_b = rand & ((1 << 62) - 1)  # 62 bits
    value = (millis << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b
    return str(uuid.UUID(int=value))
