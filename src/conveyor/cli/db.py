"""``conveyor db upgrade``: create a job store's schema, or migrate it to this version."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .jobs_args import store_default
from .subcommands import Action, add_actions, missing_action

if TYPE_CHECKING:
    import argparse

    from ..jobs.stores.connector import Connection
    from ..service.files_import import Imported

__all__ = ["DB_ACTIONS", "add_commands", "db_command"]

DESCRIPTION = """\
Create the job store's tables, or migrate them to this Conveyor's schema version. Each
migration runs in its own transaction (under a lock, so several processes may start at once);
a store written by a newer Conveyor is refused, untouched. Workers and `conveyor serve` also
migrate on start; run this first when they start with many processes at once, or to check.

With --files-dir, the files folder of an earlier `conveyor serve` (its uploads and batch
records, now kept in the store) is imported in the transaction of the last migration: if the
import fails, the store stays at its old version and nothing of it is written. The folder is
left as it was either way (a note in it says it was imported): remove it yourself once you no
longer want to go back to the earlier version.
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
    upgrade.add_argument(
        "--files-dir",
        type=Path,
        help="an earlier version's files folder (files_dir) to import into the store",
    )
    upgrade.add_argument(
        "--keys-file",
        type=Path,
        help="the service's keys file: names the tenants whose files --files-dir holds",
    )


def db_command(args: argparse.Namespace) -> int:
    """Run ``conveyor db upgrade``; 2 with a message for a store that cannot be upgraded."""
    from ..errors import ConveyorError
    from .jobs_worker import EXIT_UNAVAILABLE, failed

    if args.db_command is None:
        return missing_action("conveyor db", DB_ACTIONS)
    files_dir: Path | None = getattr(args, "files_dir", None)
    keys_file: Path | None = getattr(args, "keys_file", None)
    if files_dir is not None and not files_dir.is_dir():
        print(
            f"conveyor db upgrade: --files-dir {str(files_dir)!r} is not a folder: pass the"
            " files_dir of the earlier service",
            file=sys.stderr,
        )
        return 2
    try:
        before, after, imported = asyncio.run(_upgrade(args.store, files_dir, keys_file))
    except ConveyorError as exc:
        return failed("conveyor db upgrade", exc)
    except OSError as exc:  # the store's disk, or the files folder being imported
        print(
            f"conveyor db upgrade: {exc}; nothing was changed: run it again once that is fixed",
            file=sys.stderr,
        )
        return EXIT_UNAVAILABLE
    if before == after:
        print(f"conveyor db upgrade: the schema is current (version {after})")
    else:
        print(f"conveyor db upgrade: schema version {before} -> {after}")
    if imported is not None:
        print(f"conveyor db upgrade: {files_dir}: {imported.summary()}")
    return 0


async def _upgrade(
    url: str, files_dir: Path | None, keys_file: Path | None
) -> tuple[int, int, Imported | None]:
    from .._urls import shown_url
    from ..jobs.stores.upgrade import upgrade_store
    from ..service.files_import import import_folder, mark_imported
    from ..service.keys import read_keys

    if files_dir is None:
        return (*await upgrade_store(url), None)
    tenants = {k.tenant for k in read_keys(keys_file)} if keys_file is not None else set()
    found: list[Imported] = []

    async def imports(connection: Connection) -> None:
        found.append(await import_folder(connection, files_dir, tenants))

    before, after = await upgrade_store(url, then=imports)
    mark_imported(files_dir, shown_url(url), found[0])
    return before, after, found[0]
