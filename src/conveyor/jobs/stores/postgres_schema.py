"""The PostgreSQL store's SQL: named queries from ``.sql`` files, and versioned migrations.

Queries live in ``sql/common/queries.sql`` and ``sql/postgres/queries.sql`` (read by
`sql_files`) with ``:named`` parameters; `queries` turns each into asyncpg's positional form
once (``$1, $2, ...`` and the order of the names), so a call passes a dict, as with the SQLite
store. ``:now`` becomes ``COALESCE($n, <the transaction's
time on the database>)``: a store without a clock of its own uses the database's, the one
clock that every worker and service instance then agrees on (leases, timestamps).

Migrations are the files ``sql/postgres/migrations/NNNN_*.sql``. `migrate` applies the missing
ones in order, each in its own transaction with the version bump, under an advisory lock: many
processes starting at once migrate once, and a crash mid-migration leaves the previous version
intact. A database whose version is newer than this Conveyor knows is refused before anything
is written (`StoreError`), never half-migrated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..._urls import shown_url
from ..errors import StoreError
from .sql_files import read_migrations, read_queries

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    import asyncpg

__all__ = [
    "LATEST_VERSION",
    "Query",
    "create_schema",
    "current_version",
    "migrate",
    "migrations",
    "queries",
    "split_url",
]

_SQL = resources.files("conveyor.jobs") / "sql"
# A :name parameter, not the second colon of a ``::type`` cast.
_PARAM = re.compile(r"(?<![:\w]):(\w+)")
_NOW = "COALESCE(:now::float8, extract(epoch FROM transaction_timestamp())::float8)"
#: Any constant: one advisory lock number for "migrating Conveyor's schema" (per database).
_MIGRATION_LOCK = 0x434E5659


@dataclass(frozen=True, slots=True)
class Query:
    """One named statement in asyncpg's form, and the parameter names in `$n` order."""

    sql: str
    names: tuple[str, ...]

    def args(self, params: dict[str, Any]) -> list[Any]:
        """The positional arguments for `params` (a missing name is a bug: KeyError)."""
        return [params[name] for name in self.names]


def _compile(body: str) -> Query:
    body = re.sub(r"(?<![:\w]):now\b", _NOW, body)
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    return Query(_PARAM.sub(number, body), tuple(names))


@cache
def queries() -> dict[str, Query]:
    """The named statements of ``sql/common/`` and ``sql/postgres/queries.sql``, compiled."""
    sql = read_queries(_SQL, "postgres", prefix="conveyor_")
    return {name: _compile(body) for name, body in sql.items()}


@cache
def migrations() -> tuple[tuple[int, str], ...]:
    """``(version, script)`` for every migration file, in order."""
    return read_migrations(_SQL / "postgres" / "migrations")


LATEST_VERSION = len(migrations())


def split_url(url: str) -> tuple[str, str | None]:
    """``(dsn, schema)``: the ``schema`` query parameter is ours, the rest goes to the driver.

    ``postgresql://host/db?schema=conveyor`` keeps Conveyor's tables in schema ``conveyor``
    (created if missing); without it they go to the connection's default (``public``).
    """
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # "Invalid IPv6 URL": a "[" in the password, unencoded
        msg = (
            f"store url {shown_url(url)}: {exc}; percent-encode the password's special"
            " characters (e.g. [ as %5B, / as %2F, @ as %40)"
        )
        raise StoreError(msg) from None
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((v for k, v in query if k == "schema"), None)
    rest = urlencode([(k, v) for k, v in query if k != "schema"])
    if schema is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", schema):
        msg = f"store url: schema={schema!r} must be a plain identifier, e.g. schema=conveyor"
        raise StoreError(msg)
    return urlunsplit(parts._replace(query=rest)), schema


async def create_schema(conn: asyncpg.Connection, schema: str) -> None:
    """Create `schema` if missing (under the migration lock: two creators would collide)."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')


async def current_version(conn: asyncpg.Connection) -> int:
    """The schema version of the connection's schema (0: none yet)."""
    exists = await conn.fetchval("SELECT to_regclass('conveyor_schema') IS NOT NULL")
    if not exists:
        return 0
    return int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM conveyor_schema"))


def _refuse_newer(version: int, where: str) -> None:
    if version > LATEST_VERSION:
        msg = (
            f"{where} has job store schema version {version}, newer than this Conveyor knows"
            f" ({LATEST_VERSION}): it was written by a newer Conveyor; upgrade this one"
            " (pip install -U 'conveyor[postgres]'). Nothing was written."
        )
        raise StoreError(msg)


async def migrate(
    conn: asyncpg.Connection,
    *,
    where: str = "the database",
    then: Callable[[asyncpg.Connection], Awaitable[object]] | None = None,
) -> tuple[int, int]:
    """Bring the schema up to `LATEST_VERSION`; return ``(version before, version after)``.

    `then` (an import of data into the new tables) runs in one transaction with every
    migration due: if it fails, they are rolled back with it, and the database stays at the
    version it had (the tables it needs may come from any of the migrations).
    """
    before = await current_version(conn)
    _refuse_newer(before, where)
    if before == LATEST_VERSION:
        if then is not None:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
                await then(conn)
        return before, before
    async with conn.transaction():
        # Held until this transaction ends; the migrations below wait for it in turn.
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
        await conn.execute("CREATE TABLE IF NOT EXISTS conveyor_schema (version integer NOT NULL)")
    if then is not None:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            version = await current_version(conn)
            _refuse_newer(version, where)
            for number, script in migrations():
                if version < number:
                    await conn.execute(script)
                    await conn.execute("INSERT INTO conveyor_schema (version) VALUES ($1)", number)
            await then(conn)
        return before, LATEST_VERSION
    version = before
    done = then is None
    for number, script in migrations():
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            # Another process may have migrated while this one waited for the lock.
            version = await current_version(conn)
            _refuse_newer(version, where)
            if version >= number:
                continue
            await conn.execute(script)
            await conn.execute("INSERT INTO conveyor_schema (version) VALUES ($1)", number)
            if number == LATEST_VERSION and then is not None:
                await then(conn)
                done = True
            version = number
    if not done and then is not None:  # another process made the last migration
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            await then(conn)
    return before, version
