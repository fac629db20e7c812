"""``conveyor serve`` (the job service) and ``conveyor keys add|ls|revoke``. Thin."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .._flags import add_duration
from .._loopback import is_loopback
from .jobs_args import STORE_FALLBACK
from .metrics_args import add_metrics_arguments
from .subcommands import Action, add_action, add_actions, missing_action

if TYPE_CHECKING:
    from types import FrameType

    from ..limits.redis_limiter import RedisLimits
    from ..service.config import ServiceConfig

__all__ = ["add_commands", "is_loopback", "keys_command", "serve_command"]

KEYS_DEFAULT = os.environ.get("CONVEYOR_KEYS_FILE", "conveyor-keys.json")

SERVE_DESCRIPTION = """\
Serve durable jobs over HTTP: a REST API (/v1/jobs, /v1/files), live progress as Server-Sent
Events, results as JSONL, and a dashboard at /. SQLite and an in-process worker by default;
--no-worker when separate `conveyor worker` processes run the jobs.

Security: with API keys (`conveyor keys add --tenant NAME`), every call needs one and sees
only its tenant's jobs. With none, the service answers anyone who can reach it, so it binds
to loopback only and refuses any other --host; and it answers only requests addressed to a
loopback name (Host: localhost, 127.0.0.1, [::1]; 421 otherwise), so that a web page cannot
reach it under a name of its own (DNS rebinding). Behind a reverse proxy without keys, allow
the name the proxy sends with --allowed-host.
"""

SERVE_EPILOG = """\
examples:
  conveyor serve                                   # http://127.0.0.1:8000, no keys
  conveyor keys add --tenant acme                  # prints the key once
  conveyor serve --host 0.0.0.0 --config conveyor.toml --app myproject.jobs:app

The config file (TOML) sets the store, limits and upstream connections, e.g.:
  [connections.openai]
  base_url = "https://api.openai.com"
  auth_env = "OPENAI_API_KEY"      # the key stays in the environment, never in a job
  requests_per_minute = 500
Jobs then run its http task as "http:openai". See docs/howto/serve-jobs-over-http.md.
"""

#: ``conveyor serve`` as ``conveyor --help`` lists it, and its own help.
SERVE = Action(
    "serve",
    "serve jobs over HTTP: REST API, live progress (SSE), dashboard",
    SERVE_DESCRIPTION,
    SERVE_EPILOG,
)


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``serve`` and ``keys`` on the ``conveyor`` command."""
    serve = add_action(commands, SERVE)
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (8000; 0: any free one)")
    serve.add_argument(
        "--config", type=Path, help="a TOML config file (store, limits, connections)"
    )
    serve.add_argument(
        "--store",
        metavar="URL",
        help="job store URL (else the config's; without --config, $CONVEYOR_STORE, else"
        f" {STORE_FALLBACK})",
    )
    serve.add_argument("--keys-file", type=keys_file, help=f"API keys file ({KEYS_DEFAULT})")
    serve.add_argument("--app", metavar="MODULE:NAME", help="a conveyor.App with your tasks")
    serve.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="without API keys, also answer requests with this Host name (repeatable; e.g. the"
        " name a reverse proxy forwards); loopback names are always answered",
    )
    serve.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="let web pages on this origin call the API from a browser (repeatable; e.g."
        " http://localhost:5173; never '*'); adds to the config's [cors] origins",
    )
    serve.add_argument(
        "--limits",
        metavar="URL",
        help="hold every limiter in Redis (redis://host:6379/0), shared with the"
        " `conveyor worker --limits` processes; /healthz reports whether it answers",
    )
    serve.add_argument(
        "--wait-for-store",
        action="store_true",
        help="start even if the store cannot be reached now, answering 503 until it can (for a"
        " service that may start before its database); without it, such a store is refused"
        " at start, in one line",
    )
    serve.add_argument(
        "--no-worker",
        action="store_true",
        help="run no worker here (separate `conveyor worker` processes run the jobs)",
    )
    add_duration(
        serve,
        "--lease",
        dest="lease_s",
        default=30.0,
        help="the worker's lease: a dead worker's items run elsewhere after it (30s)",
        old="--lease-s",
    )
    add_duration(
        serve,
        "--grace",
        dest="grace_s",
        default=30.0,
        help="on SIGTERM, how long in-flight items may finish (30s)",
        old="--grace-s",
    )
    add_metrics_arguments(serve, where="also GET /metrics on the API's port while it has no keys")
    keys = commands.add_parser(
        "keys",
        help="add, list and revoke the service's API keys (one tenant each)",
        description="API keys of `conveyor serve`: only their hashes are stored.",
    )
    keys.add_argument(
        "--keys-file",
        type=keys_file,
        default=Path(KEYS_DEFAULT),
        metavar="FILE",
        help=f"the keys file ({KEYS_DEFAULT}, or $CONVEYOR_KEYS_FILE)",
    )
    parsers = add_actions(keys, "keys_command", KEYS_ACTIONS)
    for parser in parsers.values():
        _keys_file_here(parser)
    add = parsers["add"]
    add.add_argument("--tenant", required=True, help="whose jobs the key reaches, e.g. acme")
    add.add_argument("--name", default="", help="a note: who or what uses the key")
    parsers["revoke"].add_argument("key_id", metavar="KEY_ID", help="the key's id (`keys ls`)")


KEYS_ACTIONS = (
    Action(
        "add",
        "make a key for a tenant; prints it once",
        "Make an API key for a tenant and print it, once: only its hash is kept.",
    ),
    Action(
        "ls",
        "list the keys (ids and tenants, never the keys)",
        "List the keys: their ids, tenants and notes (never the keys themselves).",
    ),
    Action(
        "revoke",
        "remove a key: it stops working within a second",
        "Remove a key: a running service stops taking it within a second.",
    ),
)


def _keys_file_here(parser: argparse.ArgumentParser) -> None:
    # Also accepted after the action; SUPPRESS keeps the value given before it otherwise.
    parser.add_argument(
        "--keys-file",
        type=keys_file,
        default=argparse.SUPPRESS,
        metavar="FILE",
        help=f"the keys file ({KEYS_DEFAULT})",
    )


def keys_file(text: str) -> Path:
    """``--keys-file``: a file's path (it may not exist yet), in a folder that does.

    An empty value, a directory or a folder that does not exist is refused by the parser,
    saying the fix (``""`` would otherwise be the current directory: "Is a directory").
    """
    if not text.strip():
        msg = f"is empty: pass the keys file's path, e.g. --keys-file {KEYS_DEFAULT}"
        raise argparse.ArgumentTypeError(msg)
    path = Path(text)
    if path.is_dir():
        msg = (
            f"{text!r} is a directory: pass a file in it, e.g. --keys-file"
            f" {path / Path(KEYS_DEFAULT).name}"
        )
        raise argparse.ArgumentTypeError(msg)
    if not path.parent.is_dir():
        msg = f"the folder of {text!r} does not exist: create it first, or pass another path"
        raise argparse.ArgumentTypeError(msg)
    return path


def _config(args: argparse.Namespace) -> ServiceConfig:
    from dataclasses import replace

    from ..service.config import ServiceConfig, load_config
    from .jobs_args import store_default

    config = load_config(args.config) if args.config else ServiceConfig()
    if args.store:
        config = replace(config, store=args.store)
    elif not args.config:
        config = replace(config, store=store_default())
    if args.allowed_host:
        config = replace(config, allowed_hosts=(*config.allowed_hosts, *args.allowed_host))
    if args.cors_origin:
        config = replace(config, cors_origins=(*config.cors_origins, *args.cors_origin))
    if args.keys_file:
        config = replace(config, keys_file=args.keys_file)
    elif not args.config:
        config = replace(config, keys_file=Path(KEYS_DEFAULT))
    # Beyond loopback, keys are needed for the whole life of the process: revoking the last
    # one (or deleting the file) then refuses every call rather than opening the service.
    return replace(config, require_keys=not is_loopback(args.host))


def _shared_limits(args: argparse.Namespace) -> RedisLimits | None:
    """The limiters held in Redis (``--limits URL``), or None: each in this process."""
    if not args.limits:
        return None
    from ..limits.redis_limiter import RedisLimits

    return RedisLimits(args.limits, lease_s=args.lease_s)


def _metrics_listener(args: argparse.Namespace) -> tuple[str, int] | None:
    """Where ``/metrics`` listens on its own (``--metrics-port``), or None: not apart."""
    return None if args.metrics_port is None else (args.metrics_host, args.metrics_port)


def serve_command(args: argparse.Namespace) -> int:
    """Run ``conveyor serve`` until Ctrl-C / SIGTERM."""
    try:
        import uvicorn

        from ..service import create_app
        from ..service.keys import KeyRing
    except ImportError as exc:
        from .._extras import missing_extra

        print(f"conveyor serve: {missing_extra('the service', 'service', exc)}", file=sys.stderr)
        return 2
    from .._urls import shown_url
    from ..errors import ConveyorError
    from ..jobs.errors import StoreUnavailable
    from ..jobs.worker import WorkerOptions
    from .jobs_worker import EXIT_UNAVAILABLE, load_app, reach_store

    try:
        config = _config(args)
        has_keys = KeyRing(config.keys_file).enabled
        if not has_keys and not is_loopback(args.host):
            print(
                f"conveyor serve: refusing to bind {args.host} without API keys: anyone who"
                " can reach it could run and read jobs. Add a key (`conveyor keys add --tenant"
                " NAME`), or bind 127.0.0.1.",
                file=sys.stderr,
            )
            return 2
        if not args.wait_for_store:
            # A store it cannot reach (a wrong URL, a database not started) is said now, in one
            # line, rather than found by every call as a 503.
            asyncio.run(reach_store(config.store))
        app = load_app(args.app)
        options = WorkerOptions(poll_interval_s=0.5, lease_s=args.lease_s, grace_s=args.grace_s)
        shared = _shared_limits(args)
        asgi = create_app(
            config,
            app=app,
            worker=not args.no_worker,
            worker_options=options,
            shared_limits=shared,
            metrics_listener=_metrics_listener(args),
        )
    except StoreUnavailable as exc:
        print(
            f"conveyor serve: {exc}; not started (--wait-for-store starts anyway and answers"
            " 503 until the store is back)",
            file=sys.stderr,
        )
        return EXIT_UNAVAILABLE
    except ConveyorError as exc:
        print(f"conveyor serve: {exc}", file=sys.stderr)
        return 2
    where = f"http://{args.host}:{args.port}"
    if has_keys:
        print(f"conveyor serve: API keys from {config.keys_file}; every call needs one", flush=True)
    else:
        names = ", ".join(("localhost", "127.0.0.1", "[::1]", *config.allowed_hosts))
        print(
            "conveyor serve: no API keys configured: serving on loopback only, open to anyone"
            f" on this machine, to requests addressed to {names} (add a key with `conveyor keys"
            " add --tenant NAME`)",
            flush=True,
        )
    worker = "no worker (run `conveyor worker`)" if args.no_worker else "an in-process worker"
    store = shown_url(config.store)
    limits = f", limits in {shared.url}" if shared is not None else ""
    print(f"conveyor serve: {where} (dashboard at /), store {store}, {worker}{limits}", flush=True)
    if args.metrics_port is not None:
        at = f"http://{args.metrics_host}:{args.metrics_port}/metrics"
        print(f"conveyor serve: metrics at {at}", flush=True)
    service = asgi.state.service

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            # SIGTERM / Ctrl-C: end the event streams (uvicorn waits for open connections)
            # and stop the worker, whose grace period the lifespan's end then waits out.
            try:  # a signal handler: hand the call to the loop, and wake it up
                asyncio.get_running_loop().call_soon_threadsafe(service.begin_shutdown)
            except RuntimeError:  # pragma: no cover - no loop running yet
                service.begin_shutdown()
            super().handle_exit(sig, frame)

    uv_config = uvicorn.Config(
        asgi,
        host=args.host,
        port=args.port,
        log_level="warning",
        lifespan="on",
        # Requests still open this long after SIGTERM are cut (streams end at once anyway).
        timeout_graceful_shutdown=10,
    )
    Server(uv_config).run()
    return 0


def keys_command(args: argparse.Namespace) -> int:
    """Run ``conveyor keys add|ls|revoke``."""
    from ..errors import ConfigError
    from ..service.keys import add_key, read_keys, revoke_key

    if args.keys_command is None:
        return missing_action("conveyor keys", KEYS_ACTIONS)
    path: Path = args.keys_file
    try:
        if args.keys_command == "add":
            record, secret = add_key(path, tenant=args.tenant, name=args.name)
            print(secret)
            print(
                f"key {record.id} for tenant {record.tenant!r} added to {path}; it is shown only"
                " this once: keep it now",
                file=sys.stderr,
            )
        elif not path.exists():
            print(
                f"conveyor keys {args.keys_command}: --keys-file {str(path)!r} does not exist:"
                f" pass the service's keys file, or make one with `conveyor keys add"
                f" --keys-file {path} --tenant NAME`",
                file=sys.stderr,
            )
            return 2
        elif args.keys_command == "ls":
            for k in read_keys(path):
                print(f"{k.id}  tenant={k.tenant}  {k.name}".rstrip())
        else:
            record = revoke_key(path, args.key_id)
            print(f"key {record.id} of tenant {record.tenant!r} revoked", file=sys.stderr)
    except ConfigError as exc:
        print(f"conveyor keys {args.keys_command}: {exc}", file=sys.stderr)
        return 2
    return 0
