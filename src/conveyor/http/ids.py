"""Sets of custom_ids for million-line files, at 16 bytes per id whatever its length.

A Python set of a million 15-character ids costs about 94 MB (measured), and more for longer
ids. Here an id is kept as its 128-bit BLAKE2b digest, in two sorted arrays of 64-bit halves.
Two different ids share a digest with probability 2**-127 (one bit carries a flag): for a
million ids checked against a million, about 1e-26, far below the odds of a disk or memory
error, so equal digests are taken as equal ids. Reports that name ids (duplicates) still
confirm them against the real strings.

Ids are added in any order; every `CHUNK` of them is sorted as it fills, and `freeze` merges the
chunks once. The most held at any time is twice the final arrays (during the merge).
"""

from __future__ import annotations

import heapq
from array import array
from bisect import bisect_left
from hashlib import blake2b
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["CHUNK", "IdDigests", "digest"]

#: Ids sorted at a time before the final merge (a transient of a few MB).
CHUNK = 1 << 16
_MASK = (1 << 64) - 1


def digest(custom_id: str) -> int:
    """Return the 127-bit key of an id (its BLAKE2b-128 digest, the last bit dropped)."""
    data = blake2b(custom_id.encode(), digest_size=16).digest()
    return int.from_bytes(data, "big") >> 1


def _merged(chunks: list[tuple[array[int], array[int]]]) -> Iterator[int]:
    def keys(hi: array[int], lo: array[int]) -> Iterator[int]:
        for h, low in zip(hi, lo, strict=True):
            yield h << 64 | low

    return heapq.merge(*(keys(hi, lo) for hi, lo in chunks))


class IdDigests:
    """A set of ids, each with a flag. `add` them, `freeze`, then `get` or ``in``.

    `repeated` (after `freeze`) holds the digests added more than once.
    """

    __slots__ = ("_chunks", "_frozen", "_hi", "_lo", "_pending", "repeated")

    def __init__(self) -> None:
        self._pending: list[int] = []
        self._chunks: list[tuple[array[int], array[int]]] = []
        self._hi = array("Q")
        self._lo = array("Q")
        self._frozen = False
        self.repeated: set[int] = set()

    def add(self, key: int, *, flag: bool = False) -> None:
        """Add an id by its `digest`, with a flag (before `freeze`)."""
        self._pending.append(key << 1 | flag)
        if len(self._pending) >= CHUNK:
            self._seal()

    def _seal(self) -> None:
        pending = self._pending
        pending.sort()
        self._chunks.append(
            (array("Q", [k >> 64 for k in pending]), array("Q", [k & _MASK for k in pending]))
        )
        self._pending = []

    def freeze(self) -> None:
        """Merge what was added into the final sorted arrays, noting repeated ids."""
        if self._pending:
            self._seal()
        hi, lo = array("Q"), array("Q")
        previous = -1
        for key in _merged(self._chunks):
            if key >> 1 == previous:
                self.repeated.add(previous)
            previous = key >> 1
            hi.append(key >> 64)
            lo.append(key & _MASK)
        self._hi, self._lo = hi, lo
        self._chunks = []
        self._frozen = True

    def __len__(self) -> int:
        return len(self._hi)

    def get(self, key: int) -> bool | None:
        """The flag of the id with this `digest` (True if any copy has it), or None if absent."""
        assert self._frozen, "freeze() first"
        hi, lo = self._hi, self._lo
        full = key << 1
        top, bottom = full >> 64, (full & _MASK) >> 1
        i = bisect_left(hi, top)
        found: bool | None = None
        while i < len(hi) and hi[i] == top:
            if lo[i] >> 1 == bottom:
                found = bool(found) or bool(lo[i] & 1)
            i += 1
        return found

    def __contains__(self, key: int) -> bool:
        return self.get(key) is not None
