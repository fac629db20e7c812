"""The ``conveyor mock-api`` options, so that the command stays a few lines.

Importing this module does not import aiohttp: a command line can build its parser cheaply.

>>> import argparse
>>> parser = argparse.ArgumentParser()
>>> add_arguments(parser)
>>> args = parser.parse_args(["--latency-ms", "5", "--rpm", "600", "--fail", "0.05"])
>>> config_from_args(args).faults.fail_rate
0.05
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .config import DEFAULT_PORT, AnthropicLimits, Faults, MockConfig

if TYPE_CHECKING:
    import argparse

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
    speed.add_argument("--latency-ms", type=float, default=50.0, help="answer latency (50)")
    speed.add_argument(
        "--latency",
        choices=("fixed", "lognormal"),
        default="fixed",
        help="fixed, or lognormal with median --latency-ms (fixed)",
    )
    speed.add_argument(
        "--latency-sigma", type=float, default=0.5, help="sigma of the lognormal latency (0.5)"
    )


def _add_openai_limits(parser: argparse.ArgumentParser) -> None:
    limits = parser.add_argument_group(
        "OpenAI routes' rate limits (/v1/chat/completions, /v1/echo; none by default)"
    )
    limits.add_argument("--rpm", type=float, default=None, help="requests per minute")
    limits.add_argument("--tpm", type=float, default=None, help="tokens per minute")
    limits.add_argument(
        "--window-s",
        type=float,
        default=60.0,
        help="enforcement window: any WINDOW_S seconds admit rpm*WINDOW_S/60 requests (60)",
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
    limits.add_argument(
        "--burst-s",
        type=float,
        default=1.0,
        help="seconds of each rate a bucket holds: 1 enforces 60 RPM as 1 request a second (1)",
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
    faults.add_argument(
        "--hang-s", type=float, default=300.0, help="longest a hung request is held (300)"
    )
    faults.add_argument("--seed", type=int, default=None, help="seed of the draws (random)")


def config_from_args(args: argparse.Namespace) -> MockConfig:
    """Build the `MockConfig` the parsed options describe (`ConfigError` if one is wrong)."""
    return MockConfig(
        latency_ms=args.latency_ms,
        latency=args.latency,
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
