"""``conveyor db upgrade``: create a job store's schema, or migrate it to this version."""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse

__all__ = ["add_commands", "db_command"]

DESCRIPTION = """\
Create the job store's tables, or migrate them to this Conveyor's schema version. Each
migration runs in its own transaction (under a lock, so several processes may start at once);
a store written by a newer Conveyor is refused, untouched. Workers and `conveyor serve` also
migrate on start; run this first when they start with many processes at once, or to check.
"""


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``conveyor db upgrade``."""
    db = commands.add_parser("db", help="manage the job store's schema (upgrade)")
    sub = db.add_subparsers(dest="db_command", metavar="COMMAND", required=True)
    upgrade = sub.add_parser(
        "upgrade", help="create or migrate the schema", description=DESCRIPTION
    )
    upgrade.add_argument(
        "--store", required=True, help="postgresql://host/db?schema=conveyor or sqlite:///jobs.db"
    )


def db_command(args: argparse.Namespace) -> int:
    """Run ``conveyor db upgrade``; 2 with a message for a store that cannot be upgraded."""
    from ..errors import ConveyorError

    try:
        before, after = asyncio.run(_upgrade(args.store))
    except ConveyorError as exc:
        print(f"conveyor db upgrade: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"conveyor db upgrade: cannot reach the store: {exc}", file=sys.stderr)
        return 2
    if before == after:
        print(f"conveyor db upgrade: the schema is current (version {after})")
    else:
        print(f"conveyor db upgrade: schema version {before} -> {after}")
    return 0


async def _upgrade(url: str) -> tuple[int, int]:
    from ..jobs.client import open_store
    from ..jobs.stores.postgres import PostgresStore
    from ..jobs.stores.sqlite_schema import LATEST_VERSION

    if url.startswith(("postgresql://", "postgres://")):
        store = PostgresStore(url)
        return await store.upgrade()
    # SQLite migrates as it opens (refusing a newer file before writing anything).
    opened = open_store(url)
    await opened.close()
    return LATEST_VERSION, LATEST_VERSION
