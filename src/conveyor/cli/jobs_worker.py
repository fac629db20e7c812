"""``conveyor worker``: run jobs from a store until SIGTERM / Ctrl-C (or idle)."""

from __future__ import annotations

import asyncio
import importlib
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .._flags import add_duration
from .._loop import run as run_loop
from .arg_types import add_header_arguments
from .metrics_args import add_metrics_arguments, metrics_of, serving_metrics
from .subcommands import Action

if TYPE_CHECKING:
    import argparse

    from ..errors import ConveyorError
    from ..jobs.app import App
    from ..jobs.store import Store
    from ..jobs.worker import Worker
    from ..metrics import Metrics

__all__ = [
    "EXIT_UNAVAILABLE",
    "add_worker_arguments",
    "failed",
    "load_app",
    "reach_store",
    "worker_command",
]

WORKER_DESCRIPTION = """\
Run durable jobs from a store: claim items under a lease, run them with the job's options and
the app's shared limiters, write results in batches, renew the lease, and take over the items
of workers that died. Start as many as you like on one store.

A worker claims only the jobs whose task it has (from --app, --base-url or --config); other
jobs wait, queued, for a worker that has theirs.

SIGTERM or Ctrl-C stops gracefully: nothing new is claimed, in-flight items may finish for
--grace, the rest go back to pending for another worker. A second Ctrl-C stops at once
(in-flight items then run again elsewhere: at-least-once).
"""

WORKER_EPILOG = """\
examples:
  conveyor worker --app myproject.jobs:app --store sqlite:///jobs.db
  conveyor worker --app myproject.jobs:app --store postgresql://db/conveyor \\
                  --limits redis://redis:6379/0      # one of many, on many machines
  conveyor worker --base-url https://api.openai.com --header-env Authorization=OPENAI_AUTH

Durations are written 30s, 500ms, 2m or in seconds.
"""

#: ``conveyor worker`` as ``conveyor --help`` lists it, and its own help.
WORKER = Action(
    "worker",
    "run durable jobs from a store (SQLite by default) until stopped",
    WORKER_DESCRIPTION,
    WORKER_EPILOG,
)

#: The exit status when the store cannot be reached: a temporary failure, to try again
#: (``EX_TEMPFAIL`` of sysexits.h).
EXIT_UNAVAILABLE = 75


def failed(prog: str, exc: ConveyorError) -> int:
    """Say `exc` on standard error, after `prog`; return the exit status it means.

    `EXIT_UNAVAILABLE` for a store that cannot be reached now (try again later); 2 for the
    rest, a wrong setting or a store that refuses for good.
    """
    from ..jobs.errors import StoreUnavailable

    print(f"{prog}: {exc}", file=sys.stderr)
    return EXIT_UNAVAILABLE if isinstance(exc, StoreUnavailable) else 2


def add_worker_arguments(parser: argparse.ArgumentParser, store_default: str) -> None:
    """The options of ``conveyor worker``."""
    parser.add_argument(
        "--store", default=store_default, metavar="URL", help=f"job store URL ({store_default})"
    )
    parser.set_defaults(store_default=store_default)
    tasks = parser.add_argument_group("tasks (what this worker can run)")
    tasks.add_argument(
        "--app",
        metavar="MODULE:NAME",
        help="a conveyor.App with your tasks, imported like uvicorn's: myproject.jobs:app",
    )
    tasks.add_argument(
        "--base-url",
        metavar="URL",
        help="also register the built-in `http` task, calling only URL; its items are the"
        ' request lines of `conveyor run` ({"custom_id", "method", "url", "body"})',
    )
    tasks.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="the TOML config of `conveyor serve`: its connections' http:<name> tasks (and"
        " its store, unless --store is given), for workers beside `serve --no-worker`",
    )
    add_header_arguments(
        tasks,
        header_help="a header for every request of the http task (repeatable)",
        env_help="a header read from the environment, never stored or shown (repeatable)",
    )
    run = parser.add_argument_group("how it runs")
    run.add_argument(
        "--limits",
        metavar="URL",
        help="hold the app's limiters in Redis (redis://host:6379/0), shared by every worker",
    )
    run.add_argument(
        "--claim-size",
        type=int,
        default=None,
        metavar="N",
        help="items claimed per store call (default: the job's concurrency and a little more)",
    )
    add_duration(
        run,
        "--lease",
        dest="lease_s",
        default=30.0,
        help="how long a claim holds unrenewed: a dead worker's items run elsewhere after it (30s)",
        old="--lease-s",
    )
    add_duration(
        run,
        "--grace",
        dest="grace_s",
        default=30.0,
        help="how long in-flight items may finish after SIGTERM (30s)",
        old="--grace-s",
    )
    run.add_argument(
        "--batch-size",
        type=int,
        default=1000,
        metavar="N",
        help="results written per transaction (1000)",
    )
    add_duration(
        run,
        "--flush-interval",
        dest="flush_interval_s",
        default=0.2,
        help="results are written at least this often (200ms)",
        old="--flush-interval-s",
    )
    run.add_argument(
        "--until-idle", action="store_true", help="exit once no job is queued or running"
    )
    add_metrics_arguments(parser, where="the worker's items, limiters and store")


def load_app(spec: str | None) -> App:
    """Import ``MODULE:NAME`` (the current directory first on the path), or a new empty App."""
    from ..jobs.app import App

    if spec is None:
        return App()
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        msg = f"--app {spec!r}: use MODULE:NAME, e.g. --app myproject.jobs:app"
        raise SystemExit(msg)
    here = str(Path.cwd())
    if here not in sys.path:
        sys.path.insert(0, here)
    try:
        app = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        msg = f"--app {spec!r}: cannot load it ({exc})"
        raise SystemExit(msg) from exc
    if not isinstance(app, App):
        msg = f"--app {spec!r} is a {type(app).__name__}, not a conveyor.App"
        raise SystemExit(msg)
    return app


def _headers(args: argparse.Namespace) -> dict[str, str]:
    """The http task's headers: ``--header`` as given, ``--header-env`` read now."""
    headers: dict[str, str] = dict(args.header)
    for name, var in args.header_env:
        if var not in os.environ:
            msg = f"--header-env {name}={var}: the environment variable {var} is not set"
            raise SystemExit(msg)
        headers[name] = os.environ[var]
    return headers


def _add_config(app: App, args: argparse.Namespace) -> str:
    """Register the ``--config``'s connections (``http:<name>`` tasks); return the store URL."""
    if not args.config:
        return str(args.store)
    from .._extras import missing_extra
    from ..errors import ConfigError
    from ..service.config import load_config

    config = load_config(args.config)
    try:
        from ..service.app import add_connections
    except ImportError as exc:
        raise ConfigError(missing_extra("--config", "service", exc)) from exc
    add_connections(app, config.connections)
    # --store given on the command line wins over the config's.
    return args.store if args.store != args.store_default else config.store


async def reach_store(url: str) -> None:
    """Open the store at `url` and read from it once: `StoreUnavailable` if it cannot be reached.

    A SQLite file is created (with its folder's errors said as `StoreError`), as the command
    that calls this would create it anyway.
    """
    from ..jobs.client import open_store

    store = open_store(url)
    try:
        await store.get_job("-")
    finally:
        await store.close()


async def _work(
    worker: Worker,
    store: Store,
    *,
    until_idle: bool,
    metrics: Metrics | None = None,
    metrics_at: tuple[str, int] = ("127.0.0.1", 0),
) -> None:
    """Run `worker` until it stops: SIGTERM or Ctrl-C once to stop gracefully, twice at once."""
    loop = asyncio.get_running_loop()
    presses = 0

    def on_signal() -> None:
        nonlocal presses
        presses += 1
        if presses > 1:
            raise KeyboardInterrupt
        print("conveyor worker: stopping (finishing in-flight items)", flush=True)
        worker.stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    try:
        if until_idle:
            # A one-off run: a store it cannot reach at the start is an error, as for
            # `conveyor jobs`. A worker that runs for good waits for its store instead.
            await store.get_job("-")
        async with serving_metrics(metrics, metrics_at, who="conveyor worker"):
            await worker.run(until_idle=until_idle)
    finally:
        await store.close()


def worker_command(args: argparse.Namespace) -> int:
    """Run ``conveyor worker``."""
    from .._urls import shown_url
    from ..errors import ConveyorError
    from ..jobs.client import open_store
    from ..jobs.worker import Worker, WorkerOptions

    try:
        app = load_app(args.app)
        if args.base_url:
            app.add_http_task(base_url=args.base_url, headers=_headers(args))
        store_url = _add_config(app, args)
        if args.limits:
            from ..limits.redis_limiter import RedisLimits, share_limits

            share_limits(app, RedisLimits(args.limits, lease_s=args.lease_s))
        options = WorkerOptions(
            claim_size=args.claim_size,
            lease_s=args.lease_s,
            grace_s=args.grace_s,
            batch_size=args.batch_size,
            flush_interval_s=args.flush_interval_s,
        )
        store = open_store(store_url)
        metrics = metrics_of(args, app, store)
    except ConveyorError as exc:
        print(f"conveyor worker: {exc}", file=sys.stderr)
        return 2
    observers = None if metrics is None else metrics.observers()
    worker = Worker(store, app, options=options, observers=observers)
    limits = f"; limits in {shown_url(args.limits)}" if args.limits else ""
    print(
        f"conveyor worker {worker.id}: tasks {', '.join(app.task_names) or 'none'};"
        f" store {shown_url(store_url)}{limits}",
        flush=True,
    )
    if not app.task_names:
        print(
            "conveyor worker: warning: no tasks (pass --app MODULE:NAME, --config or"
            " --base-url): this worker claims nothing; jobs wait for a worker that has theirs",
            file=sys.stderr,
            flush=True,
        )

    try:
        at = (args.metrics_host, args.metrics_port or 0)
        run_loop(_work(worker, store, until_idle=args.until_idle, metrics=metrics, metrics_at=at))
    except ConveyorError as exc:  # unreachable, or refusing the login or the URL for good
        return failed("conveyor worker", exc)
    except KeyboardInterrupt:
        print("conveyor worker: stopped at once", file=sys.stderr)
        return 130
    print(f"conveyor worker: stopped; {worker.settled:,} item(s) settled", flush=True)
    return 0
