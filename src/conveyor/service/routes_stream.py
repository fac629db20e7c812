"""What streams: a job's events (SSE), the tenant's job list (SSE), and a job's results.

Server-Sent Events, one per change::

    retry: 1000                      (the client reconnects after 1 s)

    id: 42                           the job's version: send it back as Last-Event-ID
    event: progress                  "done" for the last one, whose status is final
    data: {...the job, as GET /v1/jobs/{id} shows it...}

A client that reconnects with ``Last-Event-ID: 42`` gets the next change after version 42
(or at once the current state, if it changed meanwhile); every stream ends with a ``done``
event carrying the final state, after which a client should not reconnect.

A store that cannot be reached does not end an event stream: it keeps its last state (and its
keepalives) and carries on once the store is back, as the job's feed does. A results stream
cannot: its end says the results are all there, so it is broken off (the client reads again
from the index of its last line).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import TYPE_CHECKING, Any

from starlette.responses import StreamingResponse

from ..jobs.errors import StoreUnavailable
from .problems import Problem
from .state import json_response, only_params, query_choice, query_int, root_of, service_of
from .views import item_view

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from starlette.requests import Request
    from starlette.responses import Response

    from ..jobs.model import ItemState, Job
    from .state import Service

__all__ = ["SSE_HEADERS", "job_events", "job_results", "jobs_events", "stream_token"]

logger = logging.getLogger("conveyor.service")
ITEM_STATES = ("pending", "running", "succeeded", "failed", "cancelled")
#: No caching, and no buffering by a proxy in front (nginx honours X-Accel-Buffering).
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
PAGE = 1000
#: The largest ``?limit=`` of the results, as the OpenAPI document says.
MAX_LIMIT = 1000


#: What a Last-Event-ID or a results cursor may be: as the OpenAPI document says.
_WHOLE = re.compile(r"^[0-9]{1,18}$")
_CURSOR = re.compile(r"^(-1|[0-9]{1,18})$")


async def _until(closing: asyncio.Event, events: AsyncIterator[str]) -> AsyncIterator[str]:
    """`events` until the service begins to stop (then the stream ends, and the server can)."""
    if closing.is_set():
        return
    stop = asyncio.ensure_future(closing.wait())
    try:
        while True:
            step = asyncio.ensure_future(anext(events))
            await asyncio.wait({step, stop}, return_when=asyncio.FIRST_COMPLETED)
            if not step.done():
                step.cancel()
                await asyncio.gather(step, return_exceptions=True)
                return
            try:
                yield step.result()
            except StopAsyncIteration:
                return
    finally:
        stop.cancel()
        await asyncio.gather(stop, return_exceptions=True)
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()


def _event(name: str, data: Any, event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def _job_by_token(service: Service, request: Request, token: str) -> Job:
    """The job of the path, opened by a stream token (and by the key too, if one is sent)."""
    job_id = request.path_params["job_id"]
    why = service.tokens.check(token, job_id)
    if why is not None:
        raise Problem(
            401,
            f"{why}: ask a new one with POST /v1/jobs/{{id}}/stream-token (with the API key);"
            " it opens this job's events for 10 minutes",
            headers={"WWW-Authenticate": 'Bearer realm="conveyor", error="invalid_token"'},
        )
    job = await service.jobs.store.get_job(job_id)
    sent_key = "authorization" in request.headers or "x-api-key" in request.headers
    tenant = service.tenant(request) if sent_key else None
    if job is None or tenant not in {None, job.tenant}:
        raise Problem(404, f"no job {job_id!r}: check the id (GET /v1/jobs lists yours)")
    return job


async def job_events(request: Request) -> Response:
    """``GET /v1/jobs/{job_id}/events``: the job's progress as Server-Sent Events.

    With the API key, or with ``?token=``: a stream token of this job (`stream_token`).
    """
    service = service_of(request)
    token = request.query_params.get("token")
    if token is None:
        _, job = await service.job(request)
    else:
        job = await _job_by_token(service, request, token)
    only_params(request, "token")
    last = request.headers.get("last-event-id")
    after: int | None = None
    if last is not None:
        if not _WHOLE.match(last.strip()):
            raise Problem(422, f"Last-Event-ID {last!r}: send back the id of the last event seen")
        after = int(last.strip())

    async def stream() -> AsyncIterator[str]:
        yield "retry: 1000\n\n"
        async for snapshot in service.feed.follow(job, after_version=after):
            if snapshot is None:
                yield ": keepalive\n\n"
                continue
            name = "done" if snapshot.done else "progress"
            try:
                view = await service.view(snapshot, request)
            except StoreUnavailable:  # an LLM job's spend is summed from the store
                view = await service.view(snapshot, request, fresh=False)
            yield _event(name, view, snapshot.version)

    events = _until(service.closing, stream())
    return StreamingResponse(events, media_type="text/event-stream", headers=SSE_HEADERS)


async def stream_token(request: Request) -> Response:
    """``POST /v1/jobs/{job_id}/stream-token``: 201, a token that opens the job's events.

    For a browser page, whose ``EventSource`` cannot send the API key: the key's holder asks
    for the token and hands it on. It opens this job's stream only, for ten minutes.
    """
    service = service_of(request)
    _, job = await service.job(request)
    only_params(request)
    token, expires_at = service.tokens.mint(job.id)
    events = f"{root_of(request)}/v1/jobs/{job.id}/events?token={token}"
    # Not cached anywhere on the way: the token is a credential, if a small one.
    headers = {"Cache-Control": "no-store"}
    return json_response({"token": token, "expires_at": expires_at, "events": events}, 201, headers)


async def jobs_events(request: Request) -> Response:
    """``GET /v1/events``: the caller's newest jobs, sent again whenever one of them changes.

    What the dashboard's job list follows: one connection, however many jobs it shows.
    """
    service = service_of(request)
    tenant = service.tenant(request)
    only_params(request, "limit")
    limit = query_int(request, "limit", 20, 1, 100)
    interval_s = max(1.0, 4 * service.feed.interval_s)
    store = service.jobs.store

    async def stream() -> AsyncIterator[str]:
        yield "retry: 1000\n\n"
        seen: tuple[tuple[str, int], ...] | None = None
        quiet_s = lived_s = 0.0
        down = False
        while lived_s < service.list_events_max_s:
            views = None
            try:
                jobs = await store.list_jobs(tenant=tenant, limit=limit)
                marks = tuple((j.id, j.version) for j in jobs)
                if marks != seen:
                    views = [await service.view(j, request) for j in jobs]
            except StoreUnavailable as exc:
                # The list shown stays as it was; read again next interval. Said once per
                # outage (the other routes' 503s and /healthz say the rest).
                if not down:
                    down = True
                    logger.warning("conveyor service: the job list's stream waits: %s", exc)
            else:
                down = False
            if views is not None:
                seen, quiet_s = marks, 0.0
                yield _event("jobs", {"data": views})
            elif quiet_s >= 15:
                quiet_s = 0.0
                yield ": keepalive\n\n"
            pause_s = min(interval_s, service.list_events_max_s - lived_s)
            await asyncio.sleep(pause_s)
            quiet_s += pause_s
            lived_s += pause_s

    events = _until(service.closing, stream())
    return StreamingResponse(events, media_type="text/event-stream", headers=SSE_HEADERS)


async def job_results(request: Request) -> Response:
    """``GET /v1/jobs/{job_id}/results``: items streamed as JSONL, or a page of JSON."""
    service = service_of(request)
    _, job = await service.job(request)
    only_params(request, "state", "format", "cursor", "limit")
    state: ItemState | None = query_choice(request, "state", ITEM_STATES)  # type: ignore[assignment]
    fmt = query_choice(request, "format", ("jsonl", "json")) or "jsonl"
    text = request.query_params.get("cursor")
    if text is not None and not _CURSOR.match(text):
        raise Problem(422, f"?cursor={text!r}: pass the next_cursor of the previous page")
    after = -1 if text is None else int(text)
    store = service.jobs.store
    if fmt == "json":
        limit = query_int(request, "limit", 100, 1, MAX_LIMIT)
        page = await store.items(job.id, state=state, after=after, limit=limit)
        next_cursor = str(page[-1].index) if len(page) == limit else None
        return json_response({"data": [item_view(i) for i in page], "next_cursor": next_cursor})
    # The stream: every item after the cursor, or the first `limit` of them (as a page).
    given = "limit" in request.query_params
    left = query_int(request, "limit", 0, 1, MAX_LIMIT) if given else None

    async def lines() -> AsyncIterator[str]:
        # One page in memory at a time, never the whole set.
        cursor, wanted = after, left
        while wanted is None or wanted > 0:
            size = PAGE if wanted is None else min(PAGE, wanted)
            page = await store.items(job.id, state=state, after=cursor, limit=size)
            if page:
                yield "".join(json.dumps(item_view(i), ensure_ascii=False) + "\n" for i in page)
            if len(page) < size:
                return
            cursor = page[-1].index
            if wanted is not None:
                wanted -= size

    return StreamingResponse(lines(), media_type="application/jsonl")
