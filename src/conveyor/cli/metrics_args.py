"""``--metrics-port`` and ``--metrics-host`` of ``conveyor serve`` and ``conveyor worker``."""

from __future__ import annotations

import argparse
import contextlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from ..jobs.app import App
    from ..jobs.store import Store
    from ..metrics import Metrics

__all__ = ["add_metrics_arguments", "metrics_of", "port", "serving_metrics"]


def port(text: str) -> int:
    """A TCP port: a whole number from 0 (any free one) to 65535."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        msg = f"{text!r} is not a port: pass a whole number from 1 to 65535, e.g. 9464"
        raise argparse.ArgumentTypeError(msg)
    return value


def add_metrics_arguments(parser: argparse.ArgumentParser, *, where: str) -> None:
    """Register the two options; `where` says what else serves the metrics."""
    parser.add_argument(
        "--metrics-port",
        type=port,
        metavar="PORT",
        help=f"serve Prometheus metrics at http://HOST:PORT/metrics ({where}; needs"
        " pip install 'conveyor[metrics]')",
    )
    parser.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        metavar="HOST",
        help="the address of the metrics listener (127.0.0.1: this machine only)",
    )


def metrics_of(args: argparse.Namespace, app: App, store: Store | None) -> Metrics | None:
    """The metrics ``--metrics-port`` asks for, or None; `ConfigError` without the extra."""
    if args.metrics_port is None:
        return None
    from .._extras import missing_extra
    from ..errors import ConfigError

    try:
        from ..metrics import Metrics
    except ImportError as exc:
        raise ConfigError(missing_extra("--metrics-port", "metrics", exc)) from exc
    return Metrics(app=app, store=store)


@contextlib.asynccontextmanager
async def serving_metrics(
    metrics: Metrics | None, at: tuple[str, int], *, who: str
) -> AsyncIterator[None]:
    """Serve `metrics` at ``at`` (host, port) meanwhile, saying where; nothing without."""
    if metrics is None:
        yield
        return
    from ..metrics import MetricsListener

    host, port = at
    async with MetricsListener(metrics, host=host, port=port) as listener:
        print(f"{who}: metrics at {listener.url}/metrics", flush=True)
        yield
