"""The `conveyor` command. Thin: it parses arguments and calls the library."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

from .._flags import add_duration
from .._version import __version__

__all__ = ["main"]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        msg = f"{text!r} is not a whole number"
        raise argparse.ArgumentTypeError(msg) from None
    if value < 1:
        msg = f"{value} must be at least 1"
        raise argparse.ArgumentTypeError(msg)
    return value


def build_parser() -> argparse.ArgumentParser:
    """Build the command line, with help that explains each command."""
    parser = argparse.ArgumentParser(
        prog="conveyor",
        description=(
            "Run many API calls as fast as the APIs allow and never faster;"
            " settle every item with its outcome."
        ),
    )
    parser.add_argument("--version", action="version", version=f"conveyor {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="run a JSONL batch against a local rate-limited mock API, with live progress",
        description=(
            "Start the local mock API (rate limits over a strict 1 s window, lognormal latency,"
            " a few 500s, hangs and dropped connections), write a few thousand chat requests"
            " to a JSONL file, and send them with `conveyor run` under the same limits: live"
            " progress, the summary, and how close the run came to the ideal time the limits"
            " allow. Needs nothing but this package."
        ),
    )
    demo.add_argument(
        "--requests", type=_positive_int, default=2_000, help="requests to send (2000)"
    )
    demo.add_argument(
        "--concurrency", type=_positive_int, default=50, help="requests in flight at most (50)"
    )
    demo.add_argument(
        "--rpm", type=_positive_int, default=7_200, help="the API's requests per minute (7200)"
    )
    demo.add_argument(
        "--tpm",
        type=_positive_int,
        default=3_300_000,
        help="the API's tokens per minute (3300000)",
    )
    add_duration(
        demo,
        "--latency",
        dest="latency_s",
        default=0.15,
        help="the API's median latency (150ms)",
        old="--latency-ms",
        old_unit_s=0.001,
        allow_zero=True,
    )
    demo.add_argument("--seed", type=int, default=7, help="seed of the requests and faults (7)")
    demo.add_argument(
        "--keep",
        type=Path,
        metavar="DIR",
        help="write requests.jsonl, results.jsonl and summary.json to DIR (default: a temporary"
        " folder, removed after)",
    )
    _add_run(commands)
    _add_mock_api(commands)
    _add_jobs(commands)
    _add_db(commands)
    _add_serve(commands)
    return parser


def _add_serve(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from .serve import add_commands

    add_commands(commands)


def _add_jobs(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from .jobs import add_commands

    add_commands(commands)


def _add_db(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from .db import add_commands

    add_commands(commands)


def _add_run(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from .run import RUN, add_arguments
    from .subcommands import add_action

    add_arguments(add_action(commands, RUN))


def _add_mock_api(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from ..mockapi import add_arguments

    mock = commands.add_parser(
        "mock-api",
        help="serve a local mock LLM API with rate limits and faults, for trying things out",
        description=(
            "Serve a rate-limited fake OpenAI-style API on 127.0.0.1 (chat completions, echo,"
            " /stats) until Ctrl-C; prints its URL once listening."
        ),
    )
    add_arguments(mock)


def main(argv: Sequence[str] | None = None) -> int:  # noqa: PLR0911 - a return per command
    """Run the command line."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import DemoOptions, run_demo

        options = DemoOptions(
            requests=args.requests,
            concurrency=args.concurrency,
            rpm=args.rpm,
            tpm=args.tpm,
            latency_ms=args.latency_s * 1000.0,
            seed=args.seed,
            keep=args.keep,
        )
        try:
            return run_demo(options)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
    if args.command == "run":
        from .run import run_command

        return run_command(args)
    if args.command == "mock-api":
        return _mock_api(args)
    if args.command in {"worker", "jobs"}:
        from .jobs import jobs_command

        return jobs_command(args)
    if args.command == "db":
        from .db import db_command

        return db_command(args)
    if args.command in {"serve", "keys"}:
        from .serve import keys_command, serve_command

        return serve_command(args) if args.command == "serve" else keys_command(args)
    parser.print_help()
    return 2


def _mock_api(args: argparse.Namespace) -> int:
    """Serve the mock API in the foreground until Ctrl-C or SIGTERM."""
    from ..errors import ConfigError
    from ..mockapi import config_from_args, serve

    def ready(url: str) -> None:
        print(f"conveyor mock-api: listening on {url} (Ctrl-C to stop)", flush=True)

    try:
        config = config_from_args(args)
        serve(config, host=args.host, port=args.port, allow_remote=args.allow_remote, ready=ready)
    except ConfigError as exc:
        print(f"conveyor mock-api: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(
            f"conveyor mock-api: cannot listen on {args.host}:{args.port}: {exc.strerror};"
            " pass --port 0 for any free port",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        pass
    print("conveyor mock-api: stopped", flush=True)
    return 0


def console_main() -> None:
    """Run the `conveyor` console script."""
    sys.exit(main())
