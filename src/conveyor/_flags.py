"""Command-line flags every ``conveyor`` command shares: durations, and renamed flags.

One duration style everywhere: ``30s``, ``500ms``, ``2m``, ``1h``, or a bare number of seconds
(``1.5``). Flag names carry no unit (``--timeout``, ``--lease``); the unit is in the value.

A renamed flag keeps its old spelling, hidden from ``--help``: it still works, and says on
standard error what to write instead (``--lease-s 30`` -> ``--lease 30s``).

>>> import argparse
>>> parser = argparse.ArgumentParser()
>>> add_duration(parser, "--lease", dest="lease_s", default=30.0, help="lease", old="--lease-s")
>>> parser.parse_args(["--lease", "2m"]).lease_s
120.0
>>> parse_duration("500ms"), parse_duration("1.5")
(0.5, 1.5)
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = [
    "DURATION_HELP",
    "add_duration",
    "add_renamed",
    "duration_text",
    "parse_duration",
]

#: How a duration is written, for messages and help.
DURATION_HELP = "30s, 500ms, 2m or a number of seconds"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str, *, bare_unit_s: float = 1.0, allow_zero: bool = False) -> float:
    """Seconds from ``30s``, ``500ms``, ``2m``, ``1h`` or a bare number (of `bare_unit_s`).

    Raises `argparse.ArgumentTypeError` saying how to write it; 0 only with `allow_zero`.

    >>> parse_duration("2m"), parse_duration("250", bare_unit_s=0.001)
    (120.0, 0.25)
    """
    match = _DURATION.match(text)
    if match is None:
        msg = f"{text!r} is not a duration: write it like {DURATION_HELP}"
        raise argparse.ArgumentTypeError(msg)
    unit = match.group(2)
    seconds = float(match.group(1)) * (_UNIT_S[unit] if unit else bare_unit_s)
    if seconds <= 0 and not allow_zero:
        msg = f"{text!r}: the duration must be more than 0, e.g. 1s"
        raise argparse.ArgumentTypeError(msg)
    return seconds


def duration_text(seconds: float) -> str:
    """A duration as a flag takes it: ``30s``, ``150ms``, ``2.5s``.

    >>> duration_text(30.0), duration_text(0.15), duration_text(0.0)
    ('30s', '150ms', '0s')
    """
    if 0 < seconds < 1:
        return f"{round(seconds * 1000, 3):g}ms"
    return f"{seconds:g}s"


class _Renamed(argparse.Action):
    """The old spelling of a renamed flag: stores like the new one, and says to use it."""

    def __init__(
        self,
        option_strings: Sequence[str],
        dest: str,
        *,
        new: str,
        shown: Callable[[Any], str],
        **kwargs: Any,
    ) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.new = new
        self.shown = shown

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        setattr(namespace, self.dest, values)
        sys.stderr.write(
            f"{parser.prog}: note: {option_string} is deprecated; write"
            f" {self.new} {self.shown(values)} (it still works for now)\n"
        )


def add_renamed(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    old: str,
    new: str,
    *,
    dest: str,
    type: Callable[[str], Any],  # noqa: A002 - argparse's own name for it
    shown: Callable[[Any], str] = str,
) -> None:
    """Accept `old`, hidden from help, as `new`.

    `type` parses its value into what `new` stores; `shown` writes that value as `new` takes
    it, for the note.
    """
    parser.add_argument(
        old,
        dest=dest,
        type=type,
        action=_Renamed,
        new=new,
        shown=shown,
        default=argparse.SUPPRESS,
        help=argparse.SUPPRESS,
    )


def add_duration(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    flag: str,
    *,
    dest: str,
    default: float | None,
    help: str,  # noqa: A002 - argparse's own name for it
    old: str | None = None,
    old_unit_s: float = 1.0,
    allow_zero: bool = False,
) -> None:
    """Add a duration flag (stored in seconds), and its old spelling if it was renamed.

    The old spelling's bare numbers are in its old unit (`old_unit_s`: ``--latency-ms 50`` is
    50 ms), so that scripts written for it keep their meaning.
    """
    parser.add_argument(
        flag,
        dest=dest,
        type=lambda text: parse_duration(text, allow_zero=allow_zero),
        default=default,
        metavar="DURATION",
        help=help,
    )
    if old is not None:
        add_renamed(
            parser,
            old,
            flag,
            dest=dest,
            type=lambda text: parse_duration(text, bare_unit_s=old_unit_s, allow_zero=allow_zero),
            shown=duration_text,
        )
