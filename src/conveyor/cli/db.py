"""``conveyor db upgrade``: create a job store's schema, or migrate it to this version."""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING

from .jobs_args import store_default
from .subcommands import Action, add_actions, missing_action

if TYPE_CHECKING:
    import argparse

__all__ = ["DB_ACTIONS", "add_commands", "db_command"]

DESCRIPTION = """\
Create the job store's tables, or migrate them to this Conveyor's schema version. Each
migration runs in its own transaction (under a lock, so several processes may start at once);
a store written by a newer Conveyor is refused, untouched. Workers and `conveyor serve` also
migrate on start; run this first when they start with many processes at once, or to check.
"""


DB_ACTIONS = (Action("upgrade", "create or migrate the job store's schema", DESCRIPTION),)


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``conveyor db upgrade``."""
    db = commands.add_parser(
        "db",
        help="manage the job store's schema (upgrade)",
        description="The job store's schema: `conveyor db upgrade` creates or migrates it.",
    )
    store = store_default()
    upgrade = add_actions(db, "db_command", DB_ACTIONS)["upgrade"]
    upgrade.add_argument(
        "--store",
        default=store,
        metavar="URL",
        help=f"postgresql://host/db?schema=conveyor or sqlite:///jobs.db ({store}: --store, else"
        " $CONVEYOR_STORE, else sqlite:///conveyor-jobs.db, as every command)",
    )


def db_command(args: argparse.Namespace) -> int:
    """Run ``conveyor db upgrade``; 2 with a message for a store that cannot be upgraded."""
    from ..errors import ConveyorError
    from ..jobs.errors import StoreUnavailable
    from .jobs_worker import EXIT_UNAVAILABLE

    if args.db_command is None:
        return missing_action("conveyor db", DB_ACTIONS)
    try:
        before, after = asyncio.run(_upgrade(args.store))
    except StoreUnavailable as exc:
        print(f"conveyor db upgrade: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except ConveyorError as exc:
        print(f"conveyor db upgrade: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"conveyor db upgrade: cannot reach the store: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
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
