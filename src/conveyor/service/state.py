"""What every route shares, and the helpers that turn a request into a tenant and parameters.

Thin: the decisions live in the library (`conveyor.jobs`).
"""

from __future__ import annotations

import asyncio
import json
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.responses import Response

from .inflight import InFlight
from .limiter_view import LimiterSeries
from .problems import Problem
from .stream_tokens import StreamTokens

if TYPE_CHECKING:
    from collections.abc import Iterable

    from starlette.requests import Request

    from ..jobs.app import App
    from ..jobs.client import Jobs
    from ..jobs.model import Job
    from ..limits.redis_limiter import RedisLimits
    from ..metrics import Metrics
    from .config import Limits
    from .feed import JobFeed
    from .files import Files
    from .keys import KeyRing
    from .spend import JobSpend
    from .supervisor import WorkerSupervisor

__all__ = [
    "Service",
    "json_response",
    "only_params",
    "query_choice",
    "query_int",
    "root_of",
    "service_of",
]


@dataclass(slots=True)
class Service:
    """The service's parts, kept on ``app.state.service``."""

    jobs: Jobs
    app: App
    keys: KeyRing
    files: Files
    feed: JobFeed
    limits: Limits
    #: The in-process worker, kept running (None with ``worker=False``).
    worker: WorkerSupervisor | None = None
    #: How long the job list's stream lasts before the client reconnects, in seconds.
    list_events_max_s: float = 300.0
    #: Task name to the base URL it may call (the http tasks of the connections).
    base_urls: dict[str, str] = field(default_factory=dict)
    #: The tokens and cost of LLM jobs (the connections' http tasks), summed from results.
    spend: JobSpend | None = None
    #: The Redis the limiters are kept in (``conveyor serve --limits``), or None.
    shared_limits: RedisLimits | None = None
    #: Its Prometheus metrics (``GET /metrics``), or None without the metrics extra.
    metrics: Metrics | None = None
    #: Set when the service begins to stop: every event stream ends, so the server can exit.
    closing: asyncio.Event = field(default_factory=asyncio.Event)
    #: What mints and checks the tokens that open one job's event stream (for browsers).
    tokens: StreamTokens = field(default_factory=lambda: StreamTokens(secrets.token_bytes(32)))
    #: Whether calls must wait for the lifespan (it starts the in-process worker), and
    #: whether it ran: a service mounted in a host app whose lifespan does not run it says so.
    needs_start: bool = False
    started: bool = False
    #: The calls in flight in the in-process worker, per job (an observer of it).
    inflight: InFlight = field(default_factory=InFlight)
    #: The shared limiters' admitted counts over time, sampled when read (``/v1/limiters``).
    limiter_series: LimiterSeries = field(default_factory=LimiterSeries)

    def tenant(self, request: Request) -> str:
        """The caller's tenant: from its API key, or ``default`` when the service has none.

        The key comes as ``Authorization: Bearer KEY`` or, as Anthropic's SDK sends it,
        ``x-api-key: KEY``.

        Fails closed: an unreadable keys file answers 503, and a service that needs keys
        (bound beyond loopback) answers 401 when none is left, never ``default``.
        """
        keys = self.keys
        if keys.unavailable:
            raise Problem(
                503,
                "the service cannot read its API keys: the operator must fix the keys file"
                " (the error is in the service's log); try again later",
                headers={"Retry-After": "5"},
            )
        if not keys.enabled:
            return "default"
        if keys.empty:
            raise Problem(
                401,
                "this service needs an API key and none is configured: the operator must add"
                " one (`conveyor keys add --tenant NAME`)",
                headers={"WWW-Authenticate": 'Bearer realm="conveyor"'},
            )
        token = _api_key(request)
        if token is None:
            raise Problem(
                401,
                "this service needs an API key: send the header 'Authorization: Bearer <key>'"
                " or 'x-api-key: <key>' (the operator makes keys with `conveyor keys add"
                " --tenant NAME`)",
                headers={"WWW-Authenticate": 'Bearer realm="conveyor"'},
            )
        tenant = self.keys.tenant_of(token)
        if tenant is None:
            raise Problem(
                401,
                "the API key is not valid: it was mistyped or revoked; ask the operator for one",
                headers={"WWW-Authenticate": 'Bearer realm="conveyor", error="invalid_token"'},
            )
        return tenant

    async def job(self, request: Request) -> tuple[str, Job]:
        """The caller's tenant and the job of the path; 404 for another tenant's job."""
        tenant = self.tenant(request)
        job_id = request.path_params["job_id"]
        job = await self.jobs.store.get_job(job_id)
        if job is None or job.tenant != tenant:
            # Another tenant's job answers exactly like a job that does not exist.
            raise Problem(404, f"no job {job_id!r}: check the id (GET /v1/jobs lists yours)")
        return tenant, job

    async def view(self, job: Job, request: Request, *, fresh: bool = True) -> dict[str, Any]:
        """The job as the API shows it to `request`, its LLM tokens and cost in the summary.

        `fresh`: sum its results again if due (`JobSpend.refresh`); else the last figures.
        Its links start with the path the service is mounted at (`root_of`).
        """
        from .views import job_view  # noqa: PLC0415 - views imports nothing of the state

        spend = None
        if self.spend is not None:
            spend = await self.spend.refresh(job) if fresh else self.spend.figures(job)
        return job_view(job, self.app, spend, root=root_of(request))

    def begin_shutdown(self) -> None:
        """Begin to stop (SIGTERM): end every event stream and stop the in-process worker.

        The worker claims nothing new, lets in-flight items finish within its ``grace_s``,
        and releases the rest (the lifespan's end waits for it). Idempotent.
        """
        self.closing.set()
        if self.worker is not None:
            self.worker.stop()

    def wake_worker(self) -> None:
        """Tell the in-process worker (if any) there is work now."""
        if self.worker is not None:
            self.worker.worker.wake()


def _api_key(request: Request) -> str | None:
    """The key of the call, from ``Authorization: Bearer KEY`` or ``x-api-key: KEY``; or None.

    ``x-api-key`` is what Anthropic's SDK sends. Each header that is there must carry a key
    (an ``Authorization`` of another scheme is refused, not passed over), and both, if both are
    there, the same one: a call never passes on one header while the other is wrong. The key is
    only hashed (`KeyRing.tenant_of`): it is never logged nor kept.
    """
    keys: list[str] = []
    authorization = request.headers.get("authorization")
    if authorization is not None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthorized("the Authorization header must read 'Bearer <key>'")
        keys.append(token.strip())
    key = request.headers.get("x-api-key")
    if key is not None:
        if not key.strip():
            raise _unauthorized("the x-api-key header is empty: send the key in it")
        keys.append(key.strip())
    if len(set(keys)) > 1:
        raise _unauthorized("Authorization and x-api-key carry different keys: send one key")
    return keys[0] if keys else None


def _unauthorized(why: str) -> Problem:
    return Problem(
        401,
        f"{why} (the operator makes keys with `conveyor keys add --tenant NAME`)",
        headers={"WWW-Authenticate": 'Bearer realm="conveyor", error="invalid_token"'},
    )


def service_of(request: Request) -> Service:
    """The `Service` of the app that received `request`; 503 if its lifespan never ran."""
    service: Service = request.app.state.service
    if service.needs_start and not service.started:
        raise Problem(
            503,
            "the job service is not started: its lifespan, which starts the worker, did not"
            " run. Mounted in another app, run it in that app's lifespan"
            " (FastAPI(lifespan=jobs_api.lifespan), or `async with jobs_api.lifespan():`"
            " in yours); see docs/howto/add-jobs-to-a-fastapi-app.md",
        )
    return service


def root_of(request: Request) -> str:
    """The path the service is mounted at (``/jobs``), or ``""`` at the root: for links."""
    root: str = request.scope.get("root_path", "")
    return root.rstrip("/")


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response (compact; UTF-8 as it is)."""
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def only_params(request: Request, *allowed: str) -> None:
    """Refuse (422) a query parameter the operation does not know: a typo must not pass."""
    unknown = sorted(set(request.query_params) - set(allowed))
    if unknown:
        known = ", ".join(allowed) or "none"
        raise Problem(422, f"unknown query parameter(s) {', '.join(unknown)}: this takes {known}")


def query_choice(request: Request, name: str, choices: Iterable[str]) -> str | None:
    """A query parameter that must be one of `choices` (422 naming them), or ``None``."""
    value = request.query_params.get(name)
    if value is None:
        return None
    allowed = tuple(choices)
    if value not in allowed:
        raise Problem(422, f"?{name}={value!r}: pass one of {', '.join(allowed)}")
    return value


def query_int(request: Request, name: str, default: int, low: int, high: int) -> int:
    """A whole-number query parameter within [low, high] (422 saying the range)."""
    text = request.query_params.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise Problem(422, f"?{name}={text!r}: pass a whole number from {low} to {high}")
    return value
