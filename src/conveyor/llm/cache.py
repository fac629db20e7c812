"""The response cache: an answer stored under a hash of its request, returned on a repeat.

Opt-in (``conveyor run --cache PATH``, a connection's ``cache`` setting). The key is the
SHA-256 of (scope, method, url, body): the scope names the upstream (a connection's name or
base URL), so the same body sent to two APIs is two entries. Only successful answers that
passed validation are stored; errors and 429s never are (the caller decides, `put` refuses
a non-2xx status).

SQLite in WAL mode, one small transaction per stored answer: a reader never waits for a
writer, and a run killed mid-way keeps every answer stored before it. Look-ups run on the event
loop's thread: a primary-key read of a local file takes microseconds.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from typing import TYPE_CHECKING, Any

import msgspec

from ..errors import ConfigError

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["CACHE_HEADER", "ResponseCache", "cache_key"]

#: Added to the headers of an answer that came from the cache (so the result line says so).
CACHE_HEADER = "x-conveyor-cache"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    key TEXT PRIMARY KEY,
    status INTEGER NOT NULL,
    headers TEXT NOT NULL,
    body TEXT NOT NULL,
    stored_at REAL NOT NULL
)
"""
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


def cache_key(scope: str, method: str, url: str, body: bytes | None) -> str:
    """The cache key of a request: a hex SHA-256 over its four parts, unambiguously joined.

    >>> cache_key("a", "POST", "/x", b"{}") == cache_key("a", "POST", "/x", b"{}")
    True
    >>> cache_key("a", "POST", "/x", b"{}") == cache_key("b", "POST", "/x", b"{}")
    False
    """
    digest = hashlib.sha256()
    for part in (scope.encode(), method.upper().encode(), url.encode(), body or b""):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


class ResponseCache:
    """Answers by request key, in one SQLite file. `hits` and `stored` count this process's."""

    def __init__(self, path: Path) -> None:
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)
        except sqlite3.Error as exc:
            msg = f"cannot open the response cache {str(path)!r}: {exc}; choose another path"
            raise ConfigError(msg) from None
        self.path = path
        self.hits = 0
        self.stored = 0

    def get(self, key: str) -> tuple[int, dict[str, str], Any] | None:
        """The stored ``(status, headers, body)`` of `key`, or None."""
        row = self._db.execute(
            "SELECT status, headers, body FROM answers WHERE key = ?", (key,)
        ).fetchone()
        if row is None:
            return None
        self.hits += 1
        headers: dict[str, str] = _decode(row[1])
        return int(row[0]), {**headers, CACHE_HEADER: "hit"}, _decode(row[2])

    def put(self, key: str, status: int, headers: dict[str, str], body: Any) -> None:
        """Store a successful answer under `key` (a later one replaces it)."""
        if not 200 <= status < 300:
            msg = f"ResponseCache.put(status={status}): only successful answers are cached"
            raise ConfigError(msg)
        self._db.execute(
            "INSERT OR REPLACE INTO answers (key, status, headers, body, stored_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (key, status, _encode(headers).decode(), _encode(body).decode(), time.time()),
        )
        self.stored += 1

    def __len__(self) -> int:
        row = self._db.execute("SELECT count(*) FROM answers").fetchone()
        return int(row[0])

    def close(self) -> None:
        """Close the file."""
        self._db.close()
