"""Errors as ``application/problem+json`` (RFC 9457), each with a detail that says what to fix."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from .. import _clock
from ..errors import ConfigError
from ..jobs.errors import (
    InvalidJob,
    JobNotFound,
    JobStateError,
    StoreError,
    StoreUnavailable,
    TooManyActiveJobs,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "PROBLEM_JSON",
    "STORE_UNAVAILABLE",
    "STORE_UNUSABLE",
    "AnswerUnexpected",
    "Problem",
    "handlers",
    "problem_response",
    "too_many_active_detail",
]

PROBLEM_JSON = "application/problem+json"
logger = logging.getLogger("conveyor.service")

_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    421: "Misdirected Request",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class Problem(Exception):
    """Raised by a route: answered as problem+json with `status` and `detail`."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = dict(headers or {})
        self.extra = extra


def problem_response(
    status: int,
    detail: str,
    *,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> Response:
    """A problem+json response."""
    body = {
        "type": "about:blank",
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        **extra,
    }
    return Response(
        json.dumps(body, ensure_ascii=False),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


async def _problem(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return problem_response(exc.status, exc.detail, headers=exc.headers, **exc.extra)


async def _http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    detail = exc.detail
    if exc.status_code == 404:
        detail = f"no such endpoint: {request.method} {request.url.path}; see /openapi.json"
    elif exc.status_code == 405:
        detail = f"{request.method} is not allowed on {request.url.path}; see /openapi.json"
    return problem_response(exc.status_code, detail, headers=exc.headers)


async def _not_found(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, JobNotFound)
    return problem_response(404, f"no job {exc.job_id!r}: check the id (GET /v1/jobs lists yours)")


async def _invalid(_request: Request, exc: Exception) -> Response:
    return problem_response(422, str(exc))


async def _state(_request: Request, exc: Exception) -> Response:
    return problem_response(409, str(exc))


#: The problem type of an answer given while the job store cannot be reached.
STORE_UNAVAILABLE = "urn:conveyor:problem:store-unavailable"
#: The problem type of an answer given while the job store refuses the service for good.
STORE_UNUSABLE = "urn:conveyor:problem:store-unusable"


#: While the store cannot be reached, the service says so in its log at most this often.
OUTAGE_LOG_EVERY_S = 60.0


async def _store_unavailable(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StoreUnavailable)
    # A warning without a traceback: the outage is the operator's to fix, not a bug. Said
    # once a minute at most, not once per request (an outage meets every request). The
    # detail names no address (the health endpoint says more to whoever may see it).
    state, now = request.app.state, _clock.now()
    said_at = getattr(state, "outage_logged_at", None)
    if said_at is None or now - said_at >= OUTAGE_LOG_EVERY_S:
        state.outage_logged_at = now
        logger.warning(
            "conveyor service: answering 503 while the job store cannot be reached (said at"
            " most once a minute; GET /healthz tells when it is back): %s",
            exc,
        )
    return problem_response(
        503,
        "the job store cannot be reached now; nothing was lost: try again in a few seconds"
        " (GET /healthz tells when it is back)",
        headers={"Retry-After": "5"},
        type=STORE_UNAVAILABLE,
    )


async def _store_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StoreError)
    # The store refuses this service for good (a login refused, a schema newer than this
    # Conveyor): the operator's to fix, one line in the log each time; the caller gets no
    # address, and no Retry-After, since waiting alone will not help.
    logger.error("conveyor service: %s %s: %s", request.method, request.url.path, exc)
    return problem_response(
        503,
        "the job store cannot be used by this service (its configuration); the operator must"
        " fix it: the reason is in the service's log and in GET /healthz",
        type=STORE_UNUSABLE,
    )


def too_many_active_detail(exc: TooManyActiveJobs) -> str:
    """What a create refused by its tenant's limit of active jobs is told (jobs, batches)."""
    return (
        f"tenant {exc.tenant!r} has {exc.active} active jobs, the most allowed"
        f" (max_active_jobs_per_tenant={exc.limit}): wait for one to finish, or cancel one"
    )


async def _too_many(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, TooManyActiveJobs)
    return problem_response(429, too_many_active_detail(exc))


async def _unexpected(request: Request, exc: Exception) -> Response:
    # The detail never carries the exception's text: it may hold what a client must not see.
    logger.error("conveyor service: %s %s failed", request.method, request.url.path, exc_info=exc)
    return problem_response(
        500, "the service failed to answer; the error is in its log. Try again, or report it."
    )


class AnswerUnexpected:
    """ASGI middleware: an unexpected error becomes one logged line and a 500 problem+json.

    Starlette's own handler for `Exception` answers, then re-raises so that the server logs
    the error too: every 500 was logged twice (ours, then "Exception in ASGI application").
    Here it is logged once, with the method and path. An error after the response started
    (a stream) is re-raised untouched: the server must abort the connection, and logs it.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app; answer an error that escapes it before the response started."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as exc:
            if started:
                raise
            request = Request(scope)
            if isinstance(exc, StoreUnavailable):  # raised past the handlers (a lifespan, a stream)
                response = await _store_unavailable(request, exc)
            elif isinstance(exc, StoreError):
                response = await _store_error(request, exc)
            else:
                response = await _unexpected(request, exc)
            await response(scope, receive, send)


def handlers() -> dict[Any, Any]:
    """The exception handlers to give Starlette."""
    return {
        Problem: _problem,
        HTTPException: _http,
        JobNotFound: _not_found,
        InvalidJob: _invalid,
        ConfigError: _invalid,
        JobStateError: _state,
        StoreUnavailable: _store_unavailable,
        StoreError: _store_error,
        TooManyActiveJobs: _too_many,
        Exception: _unexpected,
    }
