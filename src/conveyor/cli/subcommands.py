"""Commands made of actions (``conveyor jobs ls``, ``conveyor keys add``): one table of them.

Each action has one line of help (listed by the command's ``--help``, and by the command given
without an action) and a description (its own ``--help``), written once, here. A command of
``conveyor`` with examples (``conveyor run``) is described the same way (`add_action`).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["Action", "add_action", "add_actions", "missing_action"]


@dataclass(frozen=True, slots=True)
class Action:
    """An action of a command: its name, one line of help, and what its ``--help`` says."""

    name: str
    help: str
    description: str
    #: Examples, shown after the options in its ``--help``.
    epilog: str = ""


def add_action(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], action: Action
) -> argparse.ArgumentParser:
    """Add `action` to the subcommands `sub`; return its parser.

    Its description and examples keep their lines as written.
    """
    return sub.add_parser(
        action.name,
        help=action.help,
        description=action.description,
        epilog=action.epilog or None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def add_actions(
    parser: argparse.ArgumentParser, dest: str, actions: Sequence[Action]
) -> dict[str, argparse.ArgumentParser]:
    """Add `actions` to `parser` (the action's name goes to `dest`); return their parsers.

    No action is required by argparse: the command prints the list instead
    (`missing_action`), which says more than "the following arguments are required".
    """
    sub = parser.add_subparsers(dest=dest, metavar="ACTION", title="actions")
    return {action.name: add_action(sub, action) for action in actions}


def actions_text(prog: str, actions: Sequence[Action]) -> str:
    """The actions of `prog`, one line each, and where to read more.

    >>> print(actions_text("conveyor db", [Action("upgrade", "migrate the schema", "")]))
    conveyor db: give an action:
      upgrade  migrate the schema
    (`conveyor db ACTION --help` for its options)
    """
    width = max(len(action.name) for action in actions)
    lines = [f"{prog}: give an action:"]
    lines += [f"  {action.name:<{width}}  {action.help}" for action in actions]
    lines.append(f"(`{prog} ACTION --help` for its options)")
    return "\n".join(lines)


def missing_action(prog: str, actions: Sequence[Action]) -> int:
    """Print the actions of `prog` to standard error; return 2 (a usage error)."""
    print(actions_text(prog, actions), file=sys.stderr)
    return 2
