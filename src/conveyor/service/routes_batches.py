"""OpenAI's Batch API over Conveyor jobs: ``/v1/batches``. Thin.

These routes read requests and answer with OpenAI's object shapes and error bodies
(``{"error": {"message", "type", "param", "code"}}``), so the official ``openai`` package works
unchanged with ``base_url`` pointed at the service. The lifecycle (create, expire, finalize,
cancel, sweep) is `openai_batches`; the record, the input check and the output lines are
`batches`; the files are ``/v1/files`` (`routes_files`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.responses import Response

from . import openai_batches as lifecycle
from .batches import batch_object
from .paging import page
from .routes_files import limit_param, openai_error, openai_list, unknown_param
from .state import json_response, service_of

if TYPE_CHECKING:
    from starlette.requests import Request

    from .batches import BatchRecord
    from .state import Service

__all__ = ["batch_endpoint", "batches_endpoint", "cancel_batch"]


async def create_batch(request: Request) -> Response:
    """``POST /v1/batches``."""
    service = service_of(request)
    tenant = service.tenant(request)
    try:
        # The body is at most max_body_bytes: `BodyLimit` refuses more as it streams in.
        record = await lifecycle.create(service, tenant, await request.body())
    except lifecycle.BatchRefused as no:
        return openai_error(no.status, no.message, param=no.param, code=no.code)
    return json_response(batch_object(record, record.status))


async def _record_or_404(request: Request) -> tuple[Service, str, BatchRecord | Response]:
    service = service_of(request)
    tenant = service.tenant(request)
    batch_id = request.path_params["batch_id"]
    record = await lifecycle.records(service, tenant).get(batch_id)
    if record is None:
        return service, tenant, openai_error(404, f"No batch found with id '{batch_id}'.")
    return service, tenant, record


async def batch_endpoint(request: Request) -> Response:
    """``GET /v1/batches/{batch_id}``."""
    service, tenant, record = await _record_or_404(request)
    if isinstance(record, Response):
        return record
    return json_response(batch_object(*await lifecycle.current(service, tenant, record)))


async def cancel_batch(request: Request) -> Response:
    """``POST /v1/batches/{batch_id}/cancel``: the job is cancelled; files follow."""
    service, tenant, record = await _record_or_404(request)
    if isinstance(record, Response):
        return record
    return json_response(batch_object(*await lifecycle.cancel(service, tenant, record)))


async def list_batches(request: Request) -> Response:
    """``GET /v1/batches?after=ID&limit=N``: newest first."""
    service = service_of(request)
    tenant = service.tenant(request)
    limit = unknown_param(request, "after", "limit") or limit_param(request, 20, 100)
    if isinstance(limit, Response):
        return limit
    records = await lifecycle.records(service, tenant).all()
    cut = page([r.id for r in records], limit=limit, after=request.query_params.get("after"))
    data = [
        batch_object(*await lifecycle.current(service, tenant, r))
        for r in records[cut.start : cut.stop]
    ]
    return json_response(openai_list(data, has_more=cut.has_more))


async def batches_endpoint(request: Request) -> Response:
    """``/v1/batches``: POST creates, GET lists."""
    if request.method == "POST":
        return await create_batch(request)
    return await list_batches(request)
