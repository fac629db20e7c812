"""The ``conveyor mock-api`` options, so that the command stays a few lines.

Importing this module does not import aiohttp: a command line can build its parser cheaply.

>>> import argparse
>>> parser = argparse.ArgumentParser()
>>> add_arguments(parser)
>>> args = parser.parse_args(["--latency", "5ms", "--rpm", "600", "--fail", "0.05"])
>>> config_from_args(args).faults.fail_rate, config_from_args(args).latency_ms
(0.05, 5.0)

Durations are written as every ``conveyor`` command takes them (``50ms``, ``1s``, ``2m``, or
seconds); the old spellings (``--latency-ms``, ``--window-s``, ``--burst-s``, ``--hang-s``, and
``--latency fixed|lognormal`` for the shape) still work, with a note.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from .._flags import add_duration, add_renamed, duration_text, parse_duration
from .config import DEFAULT_PORT, AnthropicLimits, Faults, MockConfig

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["add_arguments", "config_from_args"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the mock API's options to `parser` (host, port, latency, limits, faults, seed)."""
    _add_where_and_latency(parser)
    _add_openai_limits(parser)
    _add_anthropic_limits(parser)
    _add_faults(parser)


def _add_where_and_latency(parser: argparse.ArgumentParser) -> None:
    where = parser.add_argument_group("where")
    where.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    where.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port, 0 for any free one ({DEFAULT_PORT})"
    )
    where.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a --host other than loopback (the mock is then reachable from elsewhere)",
    )
    speed = parser.add_argument_group("latency")
    speed.add_argument(
        "--latency",
        dest="latency_s",
        type=_latency_or_shape,
        action=_LatencyOrShape,
        default=0.05,
        metavar="DURATION",
        help="answer latency, e.g. 50ms (the median when lognormal; 50ms)",
    )
    add_renamed(
        speed,
        "--latency-ms",
        "--latency",
        dest="latency_s",
        type=lambda text: parse_duration(text, bare_unit_s=0.001, allow_zero=True),
        shown=duration_text,
    )
    speed.add_argument(
        "--latency-shape",
        choices=_SHAPES,
        default="fixed",
        help="fixed, or lognormal around --latency (fixed)",
    )
    speed.add_argument(
        "--latency-sigma", type=float, default=0.5, help="sigma of the lognormal latency (0.5)"
    )


_SHAPES = ("fixed", "lognormal")


def _latency_or_shape(text: str) -> float | str:
    """A duration; or a shape, as ``--latency fixed|lognormal`` named it before."""
    if text.strip() in _SHAPES:
        return text.strip()
    return parse_duration(text, allow_zero=True)


class _LatencyOrShape(argparse.Action):
    """``--latency``: a time, stored; an old shape word goes to ``--latency-shape``, noted."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,  # noqa: ARG002 - argparse's signature
    ) -> None:
        if isinstance(values, str):
            namespace.latency_shape = values
            sys.stderr.write(
                f"{parser.prog}: note: --latency {values} is deprecated (--latency takes the"
                f" time now); write --latency-shape {values} (it still works for now)\n"
            )
        else:
            setattr(namespace, self.dest, values)


def _add_openai_limits(parser: argparse.ArgumentParser) -> None:
    limits = parser.add_argument_group(
        "OpenAI routes' rate limits (/v1/chat/completions, /v1/echo; none by default)"
    )
    limits.add_argument("--rpm", type=float, default=None, help="requests per minute")
    limits.add_argument("--tpm", type=float, default=None, help="tokens per minute")
    add_duration(
        limits,
        "--window",
        dest="window_s",
        default=60.0,
        help="enforcement window: any WINDOW admits rpm*WINDOW/1m requests (1m)",
        old="--window-s",
    )


def _add_anthropic_limits(parser: argparse.ArgumentParser) -> None:
    limits = parser.add_argument_group(
        "Anthropic Messages route's limits (/v1/messages; token buckets, none by default)"
    )
    limits.add_argument(
        "--anthropic-rpm", type=float, default=None, help="requests per minute (RPM)"
    )
    limits.add_argument(
        "--itpm", type=float, default=None, help="input tokens per minute, taken on arrival"
    )
    limits.add_argument(
        "--otpm",
        type=float,
        default=None,
        help="output tokens per minute, taken as each answer is produced (may go into debt)",
    )
    add_duration(
        limits,
        "--burst",
        dest="burst_s",
        default=1.0,
        help="how much of each rate a bucket holds: 1s enforces 60 RPM as 1 request a second (1s)",
        old="--burst-s",
    )
    limits.add_argument(
        "--overloaded-rate",
        type=float,
        default=0.0,
        help="fraction of admitted requests answered 529 overloaded_error at once (0)",
    )
    limits.add_argument(
        "--spend-cap-tokens",
        type=int,
        default=None,
        help="input+output tokens the account may spend; then every request is a 429 (none)",
    )


def _add_faults(parser: argparse.ArgumentParser) -> None:
    faults = parser.add_argument_group("faults (fractions of admitted requests, every route)")
    faults.add_argument("--fail", type=float, default=0.0, help="answered 500 (0)")
    faults.add_argument("--hang", type=float, default=0.0, help="never answered (0)")
    faults.add_argument("--drop", type=float, default=0.0, help="connection closed (0)")
    add_duration(
        faults,
        "--hang-for",
        dest="hang_s",
        default=300.0,
        help="longest a hung request is held (5m)",
        old="--hang-s",
    )
    faults.add_argument("--seed", type=int, default=None, help="seed of the draws (random)")


def config_from_args(args: argparse.Namespace) -> MockConfig:
    """Build the `MockConfig` the parsed options describe (`ConfigError` if one is wrong)."""
    return MockConfig(
        latency_ms=args.latency_s * 1000.0,
        latency=args.latency_shape,
        latency_sigma=args.latency_sigma,
        rpm=args.rpm,
        tpm=args.tpm,
        window_s=args.window_s,
        faults=Faults(
            fail_rate=args.fail,
            hang_rate=args.hang,
            drop_rate=args.drop,
            hang_s=args.hang_s,
        ),
        anthropic=AnthropicLimits(
            rpm=args.anthropic_rpm,
            itpm=args.itpm,
            otpm=args.otpm,
            burst_s=args.burst_s,
            overloaded_rate=args.overloaded_rate,
            spend_cap_tokens=args.spend_cap_tokens,
        ),
        seed=args.seed,
    )
