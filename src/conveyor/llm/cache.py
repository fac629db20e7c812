"""The response cache: an answer stored under a hash of its request, returned on a repeat.

Opt-in (``conveyor run --cache PATH``, a connection's ``cache`` setting). The key is the
SHA-256 of (version, scope, method, url, body): the scope names the upstream and who asks (a
run's base URL; a connection's name and base URL and the job's tenant), so the same body sent
to two APIs, or by two tenants, is two entries. Only successful answers that passed
validation are stored; errors and 429s never are (the caller decides, `put` refuses a non-2xx
status). The backends store what they are given: `conveyor.llm.scoped_cache.ScopedCache` is
what the HTTP tasks use, and it gives them only redacted answers.

Two backends behind one interface (`open_cache` picks one from the location; callers use the
coroutines `fetch`, `store` and `aclose`, and read `hits` and `stored`):

- `ResponseCache`, the default: a SQLite file in WAL mode, one small transaction per stored
  answer: a reader never waits for a writer, and a run killed mid-way keeps every answer stored
  before it. Look-ups run on the event loop's thread: a primary-key read of a local file takes
  microseconds.
- `RedisCache`, for a location ``redis://host:port/db`` (or ``rediss://``): one Redis string
  per answer under ``conveyor:cache:<key>``, shared by every machine that reaches the server.
  ``?ttl=SECONDS`` in the URL makes the answers expire; without it they are kept.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import msgspec

from .._urls import hide_secrets, shown_url
from ..errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from redis.asyncio import Redis

__all__ = ["CACHE_HEADER", "AnswerCache", "RedisCache", "ResponseCache", "cache_key", "open_cache"]

logger = logging.getLogger("conveyor.llm")

#: The prefix of the Redis keys of `RedisCache`.
REDIS_PREFIX = "conveyor:cache:"

#: Added to the headers of an answer that came from the cache (so the result line says so).
CACHE_HEADER = "x-conveyor-cache"

#: The first part of every key. A new version when what a key covers or what is stored under
#: it changes: entries written before are never hit again (v1 keys had no tenant, and their
#: answers were stored before redaction).
KEY_VERSION = "conveyor-cache-v2"

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


def cache_key(scope: str | Sequence[str], method: str, url: str, body: bytes | None) -> str:
    """The cache key of a request: a hex SHA-256 over its parts, unambiguously joined.

    `scope` is one string or several (upstream, connection, tenant): each is a part of its own.

    >>> cache_key("a", "POST", "/x", b"{}") == cache_key("a", "POST", "/x", b"{}")
    True
    >>> cache_key("a", "POST", "/x", b"{}") == cache_key("b", "POST", "/x", b"{}")
    False
    >>> cache_key(("a", "t1"), "POST", "/x", b"{}") == cache_key(("a", "t2"), "POST", "/x", b"{}")
    False
    """
    scopes = (scope,) if isinstance(scope, str) else tuple(scope)
    parts = (KEY_VERSION, str(len(scopes)), *scopes, method.upper(), url)
    digest = hashlib.sha256()
    for part in (*(p.encode() for p in parts), body or b""):
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

    async def fetch(self, key: str) -> tuple[int, dict[str, str], Any] | None:
        """`get`, as the cache interface calls it."""
        return self.get(key)

    async def store(self, key: str, status: int, headers: dict[str, str], body: Any) -> None:
        """`put`, as the cache interface calls it."""
        self.put(key, status, headers, body)

    async def aclose(self) -> None:
        """`close`, as the cache interface calls it."""
        self.close()

    async def check(self) -> None:
        """Nothing to check: the file was opened by the constructor."""


class RedisCache:
    """Answers by request key in Redis (``redis.asyncio``), under ``conveyor:cache:<key>``.

    `url`: ``redis://host:port/db`` or ``rediss://...``; an optional ``ttl=SECONDS`` query
    parameter sets how long an answer is kept (default: until deleted). `hits` and `stored`
    count this process's. The connection is opened on first use, on the running event loop.

    A cache only saves calls: while Redis cannot be reached, `fetch` misses and `store`
    keeps nothing (logged once, and once when Redis is back), so requests are sent as if
    there were no cache rather than failing.
    """

    def __init__(self, url: str) -> None:
        shown = shown_url(url)
        try:
            parts = urlsplit(url)
        except ValueError as exc:  # "Invalid IPv6 URL": an unencoded "[" in the password
            msg = f"cannot use the response cache {shown!r}: {exc}; percent-encode the password"
            raise ConfigError(msg) from None
        query = parse_qsl(parts.query, keep_blank_values=True)
        ttl = [value for name, value in query if name == "ttl"]
        self.ttl_s: int | None = None
        if ttl:
            try:
                self.ttl_s = int(ttl[-1])
            except ValueError:
                self.ttl_s = 0
            if self.ttl_s <= 0:
                msg = f"the response cache {shown!r}: ttl={ttl[-1]!r} must be whole seconds > 0"
                raise ConfigError(msg)
        try:
            from redis.asyncio import Redis  # noqa: PLC0415 - only when a Redis cache is used
        except ImportError:
            msg = (
                f"the response cache {shown!r} needs the redis package:"
                " pip install 'conveyor[redis]'"
            )
            raise ConfigError(msg) from None
        rest = urlencode([(name, value) for name, value in query if name != "ttl"])
        try:
            self._redis: Redis = Redis.from_url(urlunsplit(parts._replace(query=rest)))
        except ValueError as exc:
            msg = f"cannot use the response cache {shown!r}: {hide_secrets(str(exc), url)}"
            raise ConfigError(msg) from None
        self.url = shown
        self.hits = 0
        self.stored = 0
        self._down = False  # the last call failed for want of Redis

    def _error(self, exc: Exception) -> ConfigError:
        return ConfigError(f"the response cache at {self.url} failed: {exc}; is Redis running?")

    async def check(self) -> None:
        """Raise `ConfigError` if the server does not answer a PING."""
        from redis.exceptions import RedisError  # noqa: PLC0415

        try:
            await self._redis.ping()
        except (RedisError, OSError) as exc:
            raise self._error(exc) from None

    def _unreachable(self, exc: Exception) -> None:
        if not self._down:
            self._down = True
            logger.warning(
                "the response cache at %s cannot be reached (%s): requests are sent uncached"
                " until it is back",
                self.url,
                hide_secrets(f"{type(exc).__name__}: {exc}", self.url),
            )

    def _reached(self) -> None:
        if self._down:
            self._down = False
            logger.warning("the response cache at %s is reachable again", self.url)

    async def fetch(self, key: str) -> tuple[int, dict[str, str], Any] | None:
        """The stored ``(status, headers, body)`` of `key`, or None (also: Redis unreachable)."""
        from redis.exceptions import RedisError  # noqa: PLC0415

        try:
            raw = await self._redis.get(REDIS_PREFIX + key)
        except (RedisError, OSError) as exc:
            self._unreachable(exc)
            return None
        self._reached()
        if raw is None:
            return None
        status, headers, body = _decode(raw)
        self.hits += 1
        return int(status), {**headers, CACHE_HEADER: "hit"}, body

    async def store(self, key: str, status: int, headers: dict[str, str], body: Any) -> None:
        """Store a successful answer under `key` (a later one replaces it)."""
        if not 200 <= status < 300:
            msg = f"RedisCache.store(status={status}): only successful answers are cached"
            raise ConfigError(msg)
        from redis.exceptions import RedisError  # noqa: PLC0415

        try:
            await self._redis.set(
                REDIS_PREFIX + key, _encode([status, headers, body]), ex=self.ttl_s
            )
        except (RedisError, OSError) as exc:
            self._unreachable(exc)  # the answer stands; it is only not kept
            return
        self._reached()
        self.stored += 1

    async def aclose(self) -> None:
        """Close the connections."""
        await self._redis.aclose()


#: What the callers of the cache use: either backend.
AnswerCache = ResponseCache | RedisCache


def open_cache(location: str | Path) -> AnswerCache:
    """The cache at `location`: a ``redis://`` or ``rediss://`` URL, else a SQLite file's path."""
    text = str(location)
    if text.startswith(("redis://", "rediss://")):
        return RedisCache(text)
    return ResponseCache(Path(location))
