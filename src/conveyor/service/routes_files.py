"""OpenAI's Files API, and Conveyor's job inputs: ``/v1/files``. Thin: the files are `files.Files`.

``POST /v1/files`` serves both interfaces: a ``multipart/form-data`` upload (OpenAI's, with
``purpose`` and ``file``) is kept as sent, to be checked when a batch is made from it; any
other body is a job input, checked line by line (`routes_jobs.create_file`). Answers and
errors are in OpenAI's shapes (``{"error": {"message", "type", "param", "code"}}``), so the
official ``openai`` package works unchanged with ``base_url`` pointed at the service. Every
file is in the job store: any service instance on it serves it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.exceptions import HTTPException
from starlette.responses import Response, StreamingResponse

from .paging import page
from .routes_jobs import create_file
from .state import json_response, service_of

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from starlette.requests import Request

__all__ = [
    "file_content",
    "file_endpoint",
    "files_endpoint",
    "files_post",
    "limit_param",
    "openai_error",
    "openai_list",
    "unknown_param",
]


def openai_error(
    status: int, message: str, *, code: str | None = None, param: str | None = None
) -> Response:
    """An error in OpenAI's shape."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return json_response(body, status)


def unknown_param(request: Request, *allowed: str) -> Response | None:
    """OpenAI's 400 for a query parameter the operation does not know (a typo must not pass)."""
    unknown = sorted(set(request.query_params) - set(allowed))
    if unknown:
        return openai_error(400, f"Unrecognized request argument: {unknown[0]!r}", param=unknown[0])
    return None


def limit_param(request: Request, default: int, most: int) -> int | Response:
    """The ``limit`` query parameter, or OpenAI's 400."""
    try:
        limit = int(request.query_params.get("limit", str(default)))
    except ValueError:
        limit = 0
    if not 1 <= limit <= most:
        return openai_error(400, f"limit must be a whole number from 1 to {most}", param="limit")
    return limit


def _unsupported_field(names: list[str]) -> Response | None:
    """OpenAI's 400 for a form field the upload does not take, ``expires_after``, or none.

    A file is kept here until it is deleted: an expiry asked for (``expires_after``, or the
    SDK's ``expires_after[seconds]``) is refused rather than shown and not kept to.
    """
    if not names:
        msg = (
            "the multipart body holds no complete field (cut short, or its boundary is not"
            " the Content-Type's): send the fields 'purpose' and 'file'"
        )
        return openai_error(400, msg)
    for name in names:
        if name == "expires_after" or name.startswith("expires_after["):
            msg = "expires_after is not supported: a file is kept until it is deleted; leave it out"
            return openai_error(400, msg, param="expires_after")
        if name not in {"file", "purpose"}:
            return openai_error(400, f"Unrecognized request argument: {name!r}", param=name)
    return None


async def files_post(request: Request) -> Response:
    """``POST /v1/files``: OpenAI's multipart upload, or a Conveyor job input."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "multipart/form-data":
        return await create_file(request)
    service = service_of(request)
    tenant = service.tenant(request)
    try:
        # Starlette keeps the part in a temporary file past 1 MiB: memory holds no more.
        form = await request.form(max_files=1, max_fields=8)
    except HTTPException as exc:
        return openai_error(400, f"the multipart body cannot be read: {exc.detail}")
    try:
        refused = _unsupported_field(list(form.keys()))
        if refused is not None:
            return refused
        upload = form.get("file")
        purpose = form.get("purpose")
        if not isinstance(purpose, str) or purpose not in {"batch", "user_data"}:
            return openai_error(
                400, "purpose must be 'batch' for a batch input file", param="purpose"
            )
        if upload is None or isinstance(upload, str):
            msg = "send the file as the multipart field 'file' (none came whole)"
            return openai_error(400, msg, param="file")

        async def chunks() -> AsyncIterator[bytes]:
            while chunk := await upload.read(1 << 20):
                yield chunk

        info = await service.files.save(
            tenant,
            chunks(),
            max_bytes=service.limits.max_file_bytes,
            filename=upload.filename or "upload.jsonl",
            purpose=purpose,
        )
    finally:
        await form.close()
    return json_response(info.to_openai())


def openai_list(data: list[dict[str, Any]], *, has_more: bool) -> dict[str, Any]:
    """OpenAI's list object of one page.

    OpenAI's document requires ``first_id`` and ``last_id`` as strings: an empty page has
    ``""`` for both (OpenAI's live API sends ``null`` there; the document allows none).
    """
    first, last = (data[0]["id"], data[-1]["id"]) if data else ("", "")
    return {
        "object": "list",
        "data": data,
        "first_id": first,
        "last_id": last,
        "has_more": has_more,
    }


def _page(objects: list[dict[str, Any]], after: str | None, limit: int) -> dict[str, Any]:
    """OpenAI's list object: the `limit` objects after the one of id `after`."""
    cut = page([o["id"] for o in objects], limit=limit, after=after)
    return openai_list(objects[cut.start : cut.stop], has_more=cut.has_more)


async def list_files(request: Request) -> Response:
    """``GET /v1/files?purpose=&order=&after=&limit=``: newest first unless ``order=asc``."""
    service = service_of(request)
    tenant = service.tenant(request)
    limit = unknown_param(request, "purpose", "order", "after", "limit") or limit_param(
        request, 10_000, 10_000
    )
    if isinstance(limit, Response):
        return limit
    order = request.query_params.get("order", "desc")
    if order not in {"asc", "desc"}:
        return openai_error(400, "order must be 'asc' or 'desc'", param="order")
    found = await service.files.list(tenant)
    if order == "asc":
        found.reverse()
    # Filtered as shown: a job input is listed under ``user_data``, the purpose it shows.
    purpose = request.query_params.get("purpose")
    objects = [f.to_openai() for f in found]
    if purpose is not None:
        objects = [o for o in objects if o["purpose"] == purpose]
    return json_response(_page(objects, request.query_params.get("after"), limit))


async def files_endpoint(request: Request) -> Response:
    """``/v1/files``: POST uploads, GET lists."""
    if request.method == "POST":
        return await files_post(request)
    return await list_files(request)


def _no_such_file(file_id: str) -> Response:
    return openai_error(404, f"No such File object: {file_id}", param="id")


async def file_endpoint(request: Request) -> Response:
    """``GET /v1/files/{file_id}`` and ``DELETE`` it."""
    service = service_of(request)
    tenant = service.tenant(request)
    file_id = request.path_params["file_id"]
    if request.method == "DELETE":
        if not await service.files.delete(tenant, file_id):
            return _no_such_file(file_id)
        return json_response({"id": file_id, "object": "file", "deleted": True})
    info = await service.files.info(tenant, file_id)
    if info is None:
        return _no_such_file(file_id)
    return json_response(info.to_openai())


async def file_content(request: Request) -> Response:
    """``GET /v1/files/{file_id}/content``: the file's bytes, read a chunk at a time."""
    service = service_of(request)
    tenant = service.tenant(request)
    file_id = request.path_params["file_id"]
    info = await service.files.info(tenant, file_id)
    if info is None:
        return _no_such_file(file_id)
    return StreamingResponse(
        service.files.content(tenant, file_id),
        media_type="application/json",
        headers={"Content-Length": str(info.bytes)},
    )
