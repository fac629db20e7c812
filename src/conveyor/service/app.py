"""`create_app`: the job service as an ASGI app (Starlette), with its worker and dashboard.

>>> asgi = create_app(ServiceConfig(store="sqlite:///jobs.db"), app=my_app)  # doctest: +SKIP
>>> uvicorn.run(asgi, host="127.0.0.1", port=8000)  # doctest: +SKIP

The app opens the store when it starts (the ASGI lifespan), runs an in-process `Worker` on it
(supervised: `conveyor.service.supervisor`) unless ``worker=False`` (when separate
``conveyor worker`` processes run the jobs), answers ``GET /healthz``; every ``batch_sweep_s``
it sweeps the batches past their completion window (they expire unread) and the uploads a
killed process left in the store, and it closes them all when it stops. Files and batch
records live in the job store, so any number of instances on one store serve them all.
Without API keys it answers only requests whose ``Host`` is a loopback name, the address
reached, or one of ``allowed_hosts`` (421 otherwise: `.hosts`). With the metrics extra, it
counts its work for Prometheus: ``GET /metrics`` (`.metrics_route`), and a listener of its own
with ``metrics_listener`` (needed with API keys).

Mounted in a FastAPI or Starlette app, the host runs its lifespan (`JobService.lifespan`), its
links follow the mount's path, and browsers on ``cors_origins`` may call it (`.embed`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from importlib import resources
from typing import TYPE_CHECKING

from starlette.middleware import Middleware
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from .._extras import missing_extra
from ..errors import ConfigError
from ..jobs.app import App
from ..jobs.client import Jobs
from ..jobs.tracing import default_observers
from ..jobs.worker import WorkerOptions
from ..limits.limiter import Limiter
from ..limits.redis_limiter import RedisLimits, share_limits
from ..llm.cache import open_cache
from .anthropic_errors import AnthropicErrors
from .body import BodyLimit
from .clean_url import CleanUrl
from .config import ServiceConfig
from .embed import JobService, cors
from .feed import JobFeed
from .files import Files, file_store_of
from .files_import import warn_unimported
from .health import healthz
from .hosts import HostGuard
from .keys import KeyRing
from .message_batches import sweep_message_batches
from .metrics_route import metrics_endpoint
from .openai_batches import sweep_batches
from .openapi import build_openapi
from .problems import AnswerUnexpected, handlers
from .routes_batches import batch_endpoint, batches_endpoint, cancel_batch
from .routes_files import file_content, file_endpoint, files_endpoint
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
from .routes_stream import job_events, job_results, jobs_events, stream_token
from .routes_views import favicon, job_series, limiters_endpoint, workers_endpoint
from .spend import JobSpend
from .state import Service, json_response, root_of
from .stream_tokens import RedactTokens, StreamTokens
from .supervisor import WorkerSupervisor
from .sweeps import sweep_uploads, sweeper

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator, Mapping

    from starlette.applications import Starlette
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
        msg = missing_extra(f"metrics_listener={listener!r}", "metrics", exc)
        raise ConfigError(msg) from exc
    return Metrics(app=app, store=store)


@contextlib.contextmanager
def _tokens_redacted() -> Iterator[None]:
    """While in it, stream tokens in uvicorn's access log (a host app's too) show as [redacted]."""
    access_log = logging.getLogger("uvicorn.access")
    redact = RedactTokens()
    access_log.addFilter(redact)
    try:
        yield
    finally:
        access_log.removeFilter(redact)


def _routes(service: Service) -> list[BaseRoute]:
    """The service's routes: its API, the OpenAPI document and the dashboard."""
    openapi = {
        True: build_openapi(secured=True),
        False: build_openapi(secured=False),
    }

    async def openapi_json(request: Request) -> Response:
        doc = openapi[service.keys.enabled]
        root = root_of(request)
        return json_response({**doc, "servers": [{"url": root}]} if root else doc)

    async def index(_: Request) -> Response:
        return FileResponse(str(DASHBOARD / "index.html"), media_type="text/html")

    return [
        Route("/", index, methods=["GET"], include_in_schema=False),
        Route("/openapi.json", openapi_json, methods=["GET"], include_in_schema=False),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"], include_in_schema=False),
        Route("/v1/service", service_info, methods=["GET"]),
        Route("/v1/jobs", jobs_endpoint, methods=["GET", "POST"]),
        Route("/v1/jobs/{job_id}", get_job, methods=["GET"]),
        Route("/v1/jobs/{job_id}/events", job_events, methods=["GET"]),
        Route("/v1/jobs/{job_id}/stream-token", stream_token, methods=["POST"]),
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
        Route("/v1/jobs/{job_id}/series", job_series, methods=["GET"]),
        Route("/v1/limiters", limiters_endpoint, methods=["GET"]),
        Route("/v1/workers", workers_endpoint, methods=["GET"]),
        Route("/favicon.ico", favicon, methods=["GET"], include_in_schema=False),
        Mount("/static", StaticFiles(directory=str(DASHBOARD)), name="static"),
    ]


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
) -> JobService:
    """The service as an ASGI app; to mount it in another, see `JobService.lifespan`.

    Args:
        config: the store, keys file, limits and connections (and the files folder of an
            earlier version, to warn if it was not imported: ``conveyor db upgrade``).
        app: your tasks and limiters (the connections' http tasks are added to it).
        store: a `Store` to use instead of ``config.store`` (tests pass a `MemoryStore`); its
            ``files`` keep the uploads and batch records.
        worker: run an in-process worker; ``False`` when separate workers run the jobs.
        worker_options: the in-process worker's options.
        environ: where connection credentials are read (default: the process environment).
        shared_limits: a Redis to keep every limiter in (the app's and the connections'),
            shared with the ``conveyor worker --limits`` processes; closed with the app.
        metrics_listener: ``(host, port)``: also serve ``/metrics`` there, on a listener of
            its own (with API keys, the only place it is served: `.metrics_route`).

    Raises `ConfigError` for a connection's missing credential, or a
    ``CONVEYOR_STREAM_TOKEN_SECRET`` in `environ` shorter than 32 characters.
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
        files=Files(file_store_of(jobs.store)),
        feed=JobFeed(jobs.store, interval_s=cfg.events_interval_s),
        limits=cfg.limits,
        base_urls=base_urls,
        list_events_max_s=cfg.list_events_max_s,
        spend=JobSpend(jobs, frozenset(base_urls)),
        shared_limits=shared_limits,
        metrics=_metrics(tasks, jobs.store, metrics_listener),
        tokens=StreamTokens.from_environ(os.environ if environ is None else environ),
        needs_start=worker,
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        if service.started:
            msg = "the job service is running already: enter its lifespan once"
            raise RuntimeError(msg)
        service.started = True
        # A files folder of an earlier version, not imported into the store: said once.
        await asyncio.to_thread(warn_unimported, cfg.files_dir)
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
            seen = default_observers() if service.metrics is None else service.metrics.observers()
            observers = [service.inflight, *seen]  # in flight per job: for the dashboard
            service.worker = WorkerSupervisor(jobs.store, tasks, options, observers)
            runner = asyncio.get_running_loop().create_task(service.worker.run())
        # Batches past their completion window expire whether or not anyone reads them; the
        # uploads of a process that died are removed.
        every = [sweep_batches, sweep_message_batches, sweep_uploads]
        sweeps = sweeper(service, cfg.batch_sweep_s, every)
        sweeping = asyncio.get_running_loop().create_task(sweeps)
        # A stream token in a uvicorn access log (a host app's) shows as [redacted].
        with _tokens_redacted():
            try:
                yield
            finally:
                service.started = False
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

    routes = _routes(service)
    asgi = JobService(
        routes=routes,
        exception_handlers=handlers(),
        lifespan=lifespan,
        middleware=[
            # Outermost: a refusal too carries the CORS headers, so a page can read it.
            *cors(cfg.cors_origins),
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
