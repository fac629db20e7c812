"""The values ``conveyor run``'s options take, parsed: durations, counts, rates, headers.

Each parser raises `argparse.ArgumentTypeError` saying how to write the value.
"""

from __future__ import annotations

import argparse
import math
from typing import Literal

from .._flags import parse_duration

__all__ = [
    "add_count",
    "add_header_arguments",
    "count",
    "duration_s",
    "header",
    "header_env",
    "positive_number",
    "timeout",
]


def duration_s(text: str) -> float:
    """Seconds from ``30s``, ``500ms``, ``2m`` or a bare number of seconds, > 0."""
    return parse_duration(text)


def timeout(text: str) -> float | Literal["auto"]:
    """A duration, or ``auto``."""
    if text.strip() == "auto":
        return "auto"
    return duration_s(text)


def positive_number(text: str) -> float:
    """A finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        msg = f"{text!r} must be a number > 0"
        raise argparse.ArgumentTypeError(msg)
    return value


def count(text: str, *, least: int) -> int:
    """A whole number >= `least`."""
    try:
        value = int(text)
    except ValueError:
        msg = f"{text!r} is not a whole number"
        raise argparse.ArgumentTypeError(msg) from None
    if value < least:
        msg = f"{value} must be at least {least}"
        raise argparse.ArgumentTypeError(msg)
    return value


def add_count(
    group: argparse._ArgumentGroup,
    flag: str,
    *,
    default: int,
    help: str,  # noqa: A002 - argparse's own name for it
    least: int = 1,
) -> None:
    """Add a flag that takes a whole number ``N`` >= `least` (`count`)."""
    group.add_argument(
        flag, type=lambda t: count(t, least=least), default=default, metavar="N", help=help
    )


def header(text: str) -> tuple[str, str]:
    """``Name: value`` as ``(name, value)``."""
    name, sep, value = text.partition(":")
    if not sep or not name.strip() or " " in name.strip():
        msg = f"{text!r} is not a header: write it as 'Name: value'"
        raise argparse.ArgumentTypeError(msg)
    return name.strip(), value.strip()


def header_env(text: str) -> tuple[str, str]:
    """``Name=ENV_VAR`` as ``(name, variable)``."""
    name, sep, variable = text.partition("=")
    if not sep or not name.strip() or not variable.strip():
        msg = (
            f"{text!r}: write it as Header-Name=ENV_VAR, e.g. Authorization=OPENAI_AUTH (the"
            " header's value is read from the environment variable)"
        )
        raise argparse.ArgumentTypeError(msg)
    return name.strip(), variable.strip()


def add_header_arguments(
    group: argparse._ArgumentGroup, *, header_help: str, env_help: str
) -> None:
    """Add ``--header`` and ``--header-env``, repeatable, each parsed into ``(name, ...)``."""
    group.add_argument(
        "--header",
        action="append",
        default=[],
        type=header,
        metavar="'NAME: VALUE'",
        help=header_help,
    )
    group.add_argument(
        "--header-env",
        action="append",
        default=[],
        type=header_env,
        metavar="NAME=ENV_VAR",
        help=env_help,
    )
