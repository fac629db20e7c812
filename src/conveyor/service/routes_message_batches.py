"""Anthropic's Message Batches API: ``/v1/messages/batches`` and its batch, cancel and results.

Thin: the lifecycle is in `message_batches`; these routes read requests and answer with
Anthropic's object shapes, so the official ``anthropic`` package works unchanged with
``base_url`` pointed at the service. Every refusal is a `Problem`, answered in Anthropic's
error shape by `anthropic_errors.AnthropicErrors`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.responses import Response, StreamingResponse

from . import message_batches as batches
from .paging import page
from .problems import Problem
from .state import json_response, service_of

if TYPE_CHECKING:
    from starlette.requests import Request

    from ..jobs.model import Job
    from .message_batch_records import MessageBatchRecord
    from .state import Service

__all__ = [
    "cancel_message_batch",
    "message_batch_endpoint",
    "message_batch_results",
    "message_batches_endpoint",
]

#: The query parameters every route takes (``?beta=true``: the SDK's beta client sends it).
_ALWAYS = ("beta",)


def _params(request: Request, *allowed: str) -> None:
    """Refuse a query parameter the operation does not know (a typo must not pass)."""
    unknown = sorted(set(request.query_params) - {*allowed, *_ALWAYS})
    if unknown:
        known = ", ".join(allowed) or "none"
        raise Problem(400, f"{unknown[0]}: unknown query parameter; this takes {known}")


def _base_url(request: Request) -> str:
    """The service's URL as the caller reached it, with the point it is mounted at, if any.

    Not ``request.base_url``: that is the outermost app's, without the mount's path.
    """
    url = request.url
    return f"{url.scheme}://{url.netloc}{request.scope.get('root_path', '')}"


def _shown(request: Request, record: MessageBatchRecord, job: Job | None) -> Response:
    return json_response(batches.batch_object(record, job, _base_url(request)))


async def _found(request: Request) -> tuple[Service, str, MessageBatchRecord]:
    """The caller's service, tenant and batch of the path; 404 for one it does not have."""
    service = service_of(request)
    tenant = service.tenant(request)
    batch_id = request.path_params["batch_id"]
    record = await batches.records(service, tenant).get(batch_id)
    if record is None:
        # Another tenant's batch answers exactly like one that does not exist.
        raise Problem(404, f"Message Batch {batch_id!r} not found: check the id")
    return service, tenant, record


async def _create(request: Request) -> Response:
    _params(request)
    service = service_of(request)
    tenant = service.tenant(request)
    # The body is at most 256 MB: `BodyLimit` refuses more as it streams in.
    record = await batches.create(service, tenant, await request.body(), request.headers)
    return _shown(request, *await batches.current(service, tenant, record))


def _limit(request: Request) -> int:
    text = request.query_params.get("limit", "20")
    try:
        limit = int(text)
    except ValueError:
        limit = 0
    if not 1 <= limit <= 1000:
        raise Problem(400, f"limit: {text!r} is not a whole number from 1 to 1000")
    return limit


async def _list(request: Request) -> Response:
    """Newest first; ``after_id`` pages on to older batches, ``before_id`` back to newer."""
    _params(request, "after_id", "before_id", "limit")
    service = service_of(request)
    tenant = service.tenant(request)
    limit = _limit(request)
    after, before = request.query_params.get("after_id"), request.query_params.get("before_id")
    if after is not None and before is not None:
        raise Problem(400, "pass after_id or before_id, not both")
    records = batches.records(service, tenant)
    ids = await records.ids()
    cut = page(ids, limit=limit, after=after, before=before)
    data = []
    for batch_id in ids[cut.start : cut.stop]:
        record = await records.get(batch_id)
        if record is not None:  # deleted meanwhile
            shown = await batches.current(service, tenant, record)
            data.append(batches.batch_object(*shown, _base_url(request)))
    first, last = (data[0]["id"], data[-1]["id"]) if data else (None, None)
    body = {"data": data, "has_more": cut.has_more, "first_id": first, "last_id": last}
    return json_response(body)


async def message_batches_endpoint(request: Request) -> Response:
    """``/v1/messages/batches``: POST creates a batch, GET lists the caller's."""
    if request.method == "POST":
        return await _create(request)
    return await _list(request)


async def message_batch_endpoint(request: Request) -> Response:
    """``/v1/messages/batches/{batch_id}``: GET reads it, DELETE deletes an ended one."""
    _params(request)
    service, tenant, record = await _found(request)
    if request.method == "DELETE":
        await batches.delete(service, tenant, record)
        return json_response({"id": record.id, "type": "message_batch_deleted"})
    return _shown(request, *await batches.current(service, tenant, record))


async def cancel_message_batch(request: Request) -> Response:
    """``POST /v1/messages/batches/{batch_id}/cancel``: canceling, then ended."""
    _params(request)
    service, tenant, record = await _found(request)
    return _shown(request, *await batches.cancel(service, tenant, record))


async def message_batch_results(request: Request) -> Response:
    """``GET /v1/messages/batches/{batch_id}/results``: JSONL, one line per request, once ended."""
    _params(request)
    service, tenant, record = await _found(request)
    record, job = await batches.current(service, tenant, record)
    if not batches.ended(job):
        raise Problem(
            400,
            f"Message Batch {record.id} has not ended yet: its results are ready once its"
            f" processing_status is 'ended' (poll GET /v1/messages/batches/{record.id})",
        )
    lines = batches.result_lines(service, record, job)
    return StreamingResponse(lines, media_type="application/jsonl")
