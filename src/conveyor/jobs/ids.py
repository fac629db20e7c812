"""Sortable ids: UUIDv7 (RFC 9562), made from the time and `os.urandom`.

The first 48 bits are the Unix time in milliseconds, so ids sort by creation time (as text
too: they are lower-case hex), and ``ORDER BY id`` lists jobs oldest first without an index on
the creation time. The rest is random (74 bits), so ids made on several machines never collide
in practice.

Within one process, ids are also strictly increasing: two ids made in the same millisecond
(or after the clock stepped back) take the last one's time and count up in its 12-bit
``rand_a`` field (RFC 9562, section 6.2, method 1), so jobs list newest first exactly.
"""

from __future__ import annotations

import os
import threading
import uuid

__all__ = ["new_id"]

_lock = threading.Lock()
_last = [-1, 0]  # the (milliseconds, rand_a) of the last id made without random_bytes


def new_id(wall_s: float, *, random_bytes: bytes | None = None) -> str:
    """Return a new UUIDv7 as text, for the Unix time `wall_s`.

    >>> new_id(1_700_000_000.0, random_bytes=bytes(10))
    '018bcfe5-6800-7000-8000-000000000000'
    """
    millis = int(wall_s * 1000) & ((1 << 48) - 1)
    rand = int.from_bytes(random_bytes if random_bytes is not None else os.urandom(10))
    rand_a = (rand >> 62) & 0xFFF  # 12 bits
    rand_b = rand & ((1 << 62) - 1)  # 62 bits
    if random_bytes is None:
        with _lock:
            if millis <= _last[0]:
                millis, rand_a = _last[0], _last[1] + 1
                if rand_a > 0xFFF:  # 4,096 ids in one millisecond: borrow the next one
                    millis, rand_a = millis + 1, 0
            _last[:] = [millis, rand_a]
    value = (millis << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b
    return str(uuid.UUID(int=value))
