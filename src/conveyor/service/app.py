"""`create_app`: the job service as an ASGI app (Starlette), with its worker and dashboard.

>>> asgi = create_app(ServiceConfig(store="sqlite:///jobs.db"), app=my_app)  # doctest: +SKIP
>>> uvicorn.run(asgi, host="127.0.0.1", port=8000)  # doctest: +SKIP

The app opens the store when it starts (the ASGI lifespan), runs an in-process `Worker` on it
(supervised: `conveyor.service.supervisor`) unless ``worker=False`` (when separate
``conveyor worker`` processes run the jobs), answers ``GET /healthz``; it removes the partial
uploads a killed process left in the files folder (`.parts`), sweeps the
batches past their completion window every ``batch_sweep_s`` (they expire unread), and closes
them all when it stops. Without API keys it answers only requests whose ``Host`` is a loopback
name, the address reached, or one of ``allowed_hosts`` (421 otherwise: `.hosts`). With the
metrics extra, it counts its work for Prometheus: ``GET /metrics`` (`.metrics_route`), and a
listener of its own with ``metrics_listener`` (needed with API keys).
"""

from __future__ import annotations

import asyncio
import contextlib
from importlib import resources
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..errors import ConfigError
from ..jobs.app import App
from ..jobs.client import Jobs
from ..jobs.worker import WorkerOptions
from ..limits.limiter import Limiter
from ..limits.redis_limiter import RedisLimits, share_limits
from ..llm.cache import open_cache
from .anthropic_errors import AnthropicErrors
from .body import BodyLimit
from .clean_url import CleanUrl
from .config import ServiceConfig
from .feed import JobFeed
from .files import Files
from .health import healthz
from .hosts import HostGuard
from .keys import KeyRing
from .message_batches import sweep_message_batches
from .metrics_route import metrics_endpoint
from .openapi import build_openapi
from .problems import AnswerUnexpected, handlers
from .routes_batches import (
    batch_endpoint,
    batches_endpoint,
    cancel_batch,
    file_content,
    file_endpoint,
    files_endpoint,
    sweep_batches,
)
from .routes_jobs import (
    cancel_job,
    get_job,
    jobs_endpoint,
    retry_job,
    service_info,
    set_budget,
)
from .routes_message_batches import (
    cancel_message_batch,
    message_batch_endpoint,
    message_batch_results,
    message_batches_endpoint,
)
from .routes_stream import job_events, job_results, jobs_events
from .spend import JobSpend
from .state import Service, json_response
from .supervisor import WorkerSupervisor
from .sweeps import sweeper

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping

    from starlette.requests import Request

    from ..jobs.store import Store
    from ..metrics import Metrics
    from .config import Connection

__all__ = ["add_connections", "create_app"]

DASHBOARD = resources.files("conveyor.service") / "dashboard"


def add_connections(
    app: App, connections: tuple[Connection, ...], environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Register each connection's http task (and its limiter); return task name -> base URL.

    The credentials are read from the environment here, once, and live only in the task.
    """
    urls: dict[str, str] = {}
    for c in connections:
        limiters: list[str] = []
        config = c.limiter_config()
        if config is not None:
            app.add_limiter(Limiter.from_config(config))
            limiters.append(c.name)
        app.add_http_task(
            name=c.task_name,
            base_url=c.base_url,
            headers=c.headers(environ),
            limiters=limiters,
            cache=None if c.cache is None else open_cache(c.cache),
        )
        urls[c.task_name] = c.base_url
    return urls


def _metrics(app: App, store: Store, listener: tuple[str, int] | None) -> Metrics | None:
    """The service's metrics, or None without the metrics extra (then no listener either)."""
    try:
        from ..metrics import Metrics  # noqa: PLC0415 - an optional extra
    except ImportError as exc:
        if listener is None:
            return None
        msg = (
            f"metrics_listener={listener!r}: the metrics need the metrics extra ({exc.name} is"
            " missing): pip install 'conveyor[metrics]'"
        )
        raise ConfigError(msg) from exc
    return Metrics(app=app, store=store)


def create_app(
    config: ServiceConfig | None = None,
    *,
    app: App | None = None,
    store: Store | None = None,
    worker: bool = True,
    worker_options: WorkerOptions | None = None,
    environ: Mapping[str, str] | None = None,
    shared_limits: RedisLimits | None = None,
    metrics_listener: tuple[str, int] | None = None,
) -> Starlette:
    """The service as an ASGI app.

    Args:
        config: the store, keys file, files folder, limits and connections.
        app: your tasks and limiters (the connections' http tasks are added to it).
        store: a `Store` to use instead of ``config.store`` (tests pass a `MemoryStore`).
        worker: run an in-process worker; ``False`` when separate workers run the jobs.
        worker_options: the in-process worker's options.
        environ: where connection credentials are read (default: the process environment).
        shared_limits: a Redis to keep every limiter in (the app's and the connections'),
            shared with the ``conveyor worker --limits`` processes; closed with the app.
        metrics_listener: ``(host, port)``: also serve ``/metrics`` there, on a listener of
            its own (with API keys, the only place it is served: `.metrics_route`).
    """
    cfg = config or ServiceConfig()
    tasks = app if app is not None else App()
    base_urls = add_connections(tasks, cfg.connections, environ)
    if shared_limits is not None:
        share_limits(tasks, shared_limits)
    jobs = Jobs(store if store is not None else cfg.store, app=tasks)
    service = Service(
        jobs=jobs,
        app=tasks,
        keys=KeyRing(cfg.keys_file, required=cfg.require_keys),
        files=Files(cfg.files_dir),
        feed=JobFeed(jobs.store, interval_s=cfg.events_interval_s),
        limits=cfg.limits,
        base_urls=base_urls,
        list_events_max_s=cfg.list_events_max_s,
        spend=JobSpend(jobs, frozenset(base_urls)),
        shared_limits=shared_limits,
        metrics=_metrics(tasks, jobs.store, metrics_listener),
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        # Uploads cut short by a killed process; another process's live ones stay (locked).
        await asyncio.to_thread(service.files.sweep)
        runner: asyncio.Task[None] | None = None
        listening = contextlib.AsyncExitStack()
        if metrics_listener is not None and service.metrics is not None:
            from ..metrics import MetricsListener  # noqa: PLC0415 - an optional extra

            host, port = metrics_listener
            await listening.enter_async_context(
                MetricsListener(service.metrics, host=host, port=port)
            )
        if worker:
            options = worker_options or WorkerOptions(poll_interval_s=0.5)
            observers = None if service.metrics is None else service.metrics.observers()
            service.worker = WorkerSupervisor(jobs.store, tasks, options, observers)
            runner = asyncio.get_running_loop().create_task(service.worker.run())
        # Batches past their completion window expire whether or not anyone reads them.
        sweeps = sweeper(service, cfg.batch_sweep_s, [sweep_batches, sweep_message_batches])
        sweeping = asyncio.get_running_loop().create_task(sweeps)
        try:
            yield
        finally:
            sweeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeping
            if runner is not None and service.worker is not None:
                service.worker.stop()
                await runner
                await tasks.aclose()
            await listening.aclose()
            await jobs.close()
            if shared_limits is not None:
                await shared_limits.aclose()

    openapi = {
        True: build_openapi(secured=True),
        False: build_openapi(secured=False),
    }

    async def openapi_json(_: Request) -> Response:
        return json_response(openapi[service.keys.enabled])

    async def index(_: Request) -> Response:
        return FileResponse(str(DASHBOARD / "index.html"), media_type="text/html")

    routes = [
        Route("/", index, methods=["GET"], include_in_schema=False),
        Route("/openapi.json", openapi_json, methods=["GET"], include_in_schema=False),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"], include_in_schema=False),
        Route("/v1/service", service_info, methods=["GET"]),
        Route("/v1/jobs", jobs_endpoint, methods=["GET", "POST"]),
        Route("/v1/jobs/{job_id}", get_job, methods=["GET"]),
        Route("/v1/jobs/{job_id}/events", job_events, methods=["GET"]),
        Route("/v1/jobs/{job_id}/results", job_results, methods=["GET"]),
        Route("/v1/jobs/{job_id}/cancel", cancel_job, methods=["POST"]),
        Route("/v1/jobs/{job_id}/retry", retry_job, methods=["POST"]),
        Route("/v1/jobs/{job_id}/budget", set_budget, methods=["POST"]),
        Route("/v1/files", files_endpoint, methods=["GET", "POST"]),
        Route("/v1/files/{file_id}", file_endpoint, methods=["GET", "DELETE"]),
        Route("/v1/files/{file_id}/content", file_content, methods=["GET"]),
        Route("/v1/batches", batches_endpoint, methods=["GET", "POST"]),
        Route("/v1/batches/{batch_id}", batch_endpoint, methods=["GET"]),
        Route("/v1/batches/{batch_id}/cancel", cancel_batch, methods=["POST"]),
        Route("/v1/messages/batches", message_batches_endpoint, methods=["GET", "POST"]),
        Route("/v1/messages/batches/{batch_id}", message_batch_endpoint, methods=["GET", "DELETE"]),
        Route("/v1/messages/batches/{batch_id}/cancel", cancel_message_batch, methods=["POST"]),
        Route("/v1/messages/batches/{batch_id}/results", message_batch_results, methods=["GET"]),
        Route("/v1/events", jobs_events, methods=["GET"]),
        Mount("/static", StaticFiles(directory=str(DASHBOARD)), name="static"),
    ]
    asgi = Starlette(
        routes=routes,
        exception_handlers=handlers(),
        lifespan=lifespan,
        middleware=[
            # Outermost: every refusal under /v1/messages, the Host guard's too, in Anthropic's
            # error shape (the official SDK reads it).
            Middleware(AnthropicErrors),
            # Without keys, a foreign Host (DNS rebinding) reaches nothing.
            Middleware(HostGuard, keys=service.keys, allowed_hosts=cfg.allowed_hosts),
            Middleware(AnswerUnexpected),  # each 500 logged once, not twice
            Middleware(CleanUrl),  # no control character in a path or query reaches a route
            Middleware(BodyLimit, limits=cfg.limits),  # no body read past its limit
        ],
    )
    asgi.state.service = service
    return asgi
