"""OpenAI's Files and Batch API over Conveyor jobs: ``/v1/files`` (multipart) and ``/v1/batches``.

Thin: the batch logic is in `batches`; these routes read requests and answer with OpenAI's
object shapes and error bodies (``{"error": {"message", "type", "param", "code"}}``), so the
official ``openai`` package works unchanged with ``base_url`` pointed at the service.

``POST /v1/files`` serves both interfaces: a ``multipart/form-data`` upload (OpenAI's, with
``purpose`` and ``file``) is kept as sent, to be checked when a batch is made from it; any
other body is a job input, checked line by line as before (`routes_jobs.create_file`).

A batch's output and error files are written when its job has ended, by the first read of the
batch that finds it ended (``finalizing`` until then), under a lock so that they are written
once. `sweep_batches` (run every few seconds by the app: `.sweeps`) does for the batches
past their completion window what a read does: a batch nobody reads expires all the same.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import TYPE_CHECKING, Any

from starlette.exceptions import HTTPException
from starlette.responses import FileResponse, Response

from .. import _clock
from .._json import BadJSON, loads
from ..jobs.errors import InvalidJob, TooManyActiveJobs
from ..jobs.settle import failed_by_items
from .batches import (
    CONNECTION_KEY,
    ENDPOINTS,
    WINDOWS,
    BatchRecord,
    BatchRecords,
    batch_object,
    batch_status,
    check_input,
    read_lines,
    result_line,
)
from .paging import page
from .problems import too_many_active_detail
from .routes_jobs import create_file
from .state import json_response, service_of
from .upstream import BATCH_OPTIONS, pick_connection

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path

    from starlette.requests import Request

    from ..jobs.model import Job
    from .state import Service

__all__ = [
    "batch_endpoint",
    "batches_endpoint",
    "cancel_batch",
    "file_content",
    "file_endpoint",
    "files_endpoint",
    "files_post",
    "sweep_batches",
]

log = logging.getLogger(__name__)

_FINALIZING: dict[str, asyncio.Lock] = {}
#: The statuses a job and a batch end in (a batch also in ``expired``).
_ENDED = frozenset({"completed", "cancelled", "failed", "expired"})


def openai_error(
    status: int, message: str, *, code: str | None = None, param: str | None = None
) -> Response:
    """An error in OpenAI's shape."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return json_response(body, status)


# -- files ---------------------------------------------------------------------------------


async def files_post(request: Request) -> Response:
    """``POST /v1/files``: OpenAI's multipart upload, or a Conveyor job input."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "multipart/form-data":
        return await create_file(request)
    service = service_of(request)
    tenant = service.tenant(request)
    try:
        form = await request.form(max_files=1, max_fields=8)
    except HTTPException as exc:
        return openai_error(400, f"the multipart body cannot be read: {exc.detail}")
    try:
        upload = form.get("file")
        purpose = form.get("purpose")
        if not isinstance(purpose, str) or purpose not in {"batch", "user_data"}:
            return openai_error(
                400, "purpose must be 'batch' for a batch input file", param="purpose"
            )
        if upload is None or isinstance(upload, str):
            return openai_error(400, "send the file as the multipart field 'file'", param="file")

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


def _unknown_param(request: Request, *allowed: str) -> Response | None:
    """OpenAI's 400 for a query parameter the operation does not know (a typo must not pass)."""
    unknown = sorted(set(request.query_params) - set(allowed))
    if unknown:
        return openai_error(400, f"Unrecognized request argument: {unknown[0]!r}", param=unknown[0])
    return None


def _limit(request: Request, default: int, most: int) -> int | Response:
    """The ``limit`` query parameter, or OpenAI's 400."""
    try:
        limit = int(request.query_params.get("limit", str(default)))
    except ValueError:
        limit = 0
    if not 1 <= limit <= most:
        return openai_error(400, f"limit must be a whole number from 1 to {most}", param="limit")
    return limit


def _page(objects: list[dict[str, Any]], after: str | None, limit: int) -> dict[str, Any]:
    """OpenAI's list object: the `limit` objects after the one of id `after`."""
    cut = page([o["id"] for o in objects], limit=limit, after=after)
    shown = objects[cut.start : cut.stop]
    return {
        "object": "list",
        "data": shown,
        "first_id": shown[0]["id"] if shown else None,
        "last_id": shown[-1]["id"] if shown else None,
        "has_more": cut.has_more,
    }


async def list_files(request: Request) -> Response:
    """``GET /v1/files?purpose=&order=&after=&limit=``: newest first unless ``order=asc``."""
    service = service_of(request)
    tenant = service.tenant(request)
    limit = _unknown_param(request, "purpose", "order", "after", "limit") or _limit(
        request, 10_000, 10_000
    )
    if isinstance(limit, Response):
        return limit
    order = request.query_params.get("order", "desc")
    if order not in {"asc", "desc"}:
        return openai_error(400, "order must be 'asc' or 'desc'", param="order")
    purpose = request.query_params.get("purpose")
    found = await asyncio.to_thread(service.files.list, tenant, purpose)
    if order == "asc":
        found.reverse()
    objects = [f.to_openai() for f in found]
    return json_response(_page(objects, request.query_params.get("after"), limit))


async def files_endpoint(request: Request) -> Response:
    """``/v1/files``: POST uploads, GET lists."""
    if request.method == "POST":
        return await files_post(request)
    return await list_files(request)


def _file_or_404(service: Service, tenant: str, file_id: str) -> Any:
    info = service.files.info(tenant, file_id)
    if info is None:
        return None, openai_error(404, f"No such File object: {file_id}", param="id")
    return info, None


async def file_endpoint(request: Request) -> Response:
    """``GET /v1/files/{file_id}`` and ``DELETE`` it."""
    service = service_of(request)
    tenant = service.tenant(request)
    file_id = request.path_params["file_id"]
    info, missing = _file_or_404(service, tenant, file_id)
    if missing is not None:
        return missing  # type: ignore[no-any-return]
    if request.method == "DELETE":
        await asyncio.to_thread(service.files.delete, tenant, file_id)
        return json_response({"id": file_id, "object": "file", "deleted": True})
    return json_response(info.to_openai())


async def file_content(request: Request) -> Response:
    """``GET /v1/files/{file_id}/content``: the file's bytes."""
    service = service_of(request)
    tenant = service.tenant(request)
    file_id = request.path_params["file_id"]
    _, missing = _file_or_404(service, tenant, file_id)
    if missing is not None:
        return missing  # type: ignore[no-any-return]
    path = service.files.path(tenant, file_id)
    return FileResponse(str(path), media_type="application/jsonl")


# -- batches -------------------------------------------------------------------------------


def _lines(path: Path, max_line_bytes: int) -> Iterator[bytes]:
    with path.open("rb") as file:
        yield from read_lines(file, max_line_bytes)


def _items(path: Path, max_line_bytes: int, numbers: list[int]) -> Iterator[dict[str, Any]]:
    """The batch's requests as job items; `numbers` gets each one's line number."""
    for number, raw in enumerate(_lines(path, max_line_bytes), 1):
        if raw.strip():
            data = loads(raw)  # checked by check_input: it is a JSON object
            numbers.append(number)
            yield {k: data[k] for k in ("custom_id", "method", "url", "body")}


_ITEM = re.compile(r"^item (\d+) (.*)$", re.DOTALL)


def _refused_line(exc: InvalidJob, numbers: list[int]) -> dict[str, Any]:
    """The per-line error of an item the job refused ("item N ..."), as OpenAI's shape."""
    found = _ITEM.match(str(exc))
    if found is None or int(found.group(1)) >= len(numbers):
        return {"code": "invalid_request", "message": str(exc), "param": None, "line": None}
    line = numbers[int(found.group(1))]
    message = f"Line {line} {found.group(2)}"
    return {"code": "invalid_request", "message": message, "param": None, "line": line}


def _metadata(value: object) -> dict[str, str] | str | None:
    if value is None:
        return None
    if (
        not isinstance(value, dict)
        or len(value) > 16
        or not all(
            isinstance(k, str) and isinstance(v, str) and len(k) <= 64 and len(v) <= 512
            for k, v in value.items()
        )
    ):
        return "metadata must be at most 16 string keys (64 chars) and values (512 chars)"
    return value


async def _start(service: Service, tenant: str, task: str, record: BatchRecord) -> Job | None:
    """Check the batch's input file and submit its job; None if a line is bad (`errors`).

    Raises `TooManyActiveJobs` when the tenant has the most active jobs allowed.
    """
    path = service.files.path(tenant, record.input_file_id)
    longest = service.jobs.max_item_bytes
    record.total, record.errors = await asyncio.to_thread(
        check_input, _lines(path, longest), record.endpoint, max_line_bytes=longest
    )
    if record.errors:
        return None
    numbers: list[int] = []
    try:
        return await service.jobs.submit(
            task,
            _items(path, longest, numbers),
            options=BATCH_OPTIONS,
            tenant=tenant,
            # A batch is a job of the tenant: it counts against the same limit, in the store.
            max_active_jobs=service.limits.max_active_jobs_per_tenant,
        )
    except InvalidJob as exc:  # what the job refuses that the check let pass
        record.errors = [_refused_line(exc, numbers)]
        return None


async def create_batch(request: Request) -> Response:  # noqa: PLR0911 - one per refusal
    """``POST /v1/batches``."""
    service = service_of(request)
    tenant = service.tenant(request)
    try:
        # The body is at most max_body_bytes: `BodyLimit` refuses more as it streams in.
        spec = loads(await request.body())
    except BadJSON as exc:
        return openai_error(400, f"the body {exc.problem}")
    if not isinstance(spec, dict):
        return openai_error(400, "the body must be a JSON object")
    endpoint, window = spec.get("endpoint"), spec.get("completion_window")
    if endpoint not in ENDPOINTS:
        return openai_error(
            400, f"endpoint must be one of {', '.join(ENDPOINTS)}", param="endpoint"
        )
    if not isinstance(window, str) or window not in WINDOWS:
        windows = ", ".join(repr(w) for w in WINDOWS)
        return openai_error(
            400, f"completion_window must be one of {windows}", param="completion_window"
        )
    metadata = _metadata(spec.get("metadata"))
    if isinstance(metadata, str):
        return openai_error(400, metadata, param="metadata")
    file_id = spec.get("input_file_id")
    if not isinstance(file_id, str) or service.files.info(tenant, file_id) is None:
        return openai_error(400, f"No such File object: {file_id}", param="input_file_id")
    chosen = (metadata or {}).get(CONNECTION_KEY)
    task, why = pick_connection(
        service.base_urls, chosen, how=f"metadata={{'{CONNECTION_KEY}': NAME}}"
    )
    if task is None:
        return openai_error(400, why, param="metadata")
    now = _clock.wall()
    record = BatchRecord.new(
        endpoint=endpoint, input_file_id=file_id, window=window, metadata=metadata, now=now
    )
    try:
        job = await _start(service, tenant, task, record)
    except TooManyActiveJobs as exc:
        return openai_error(429, too_many_active_detail(exc), code="rate_limit_exceeded")
    records = BatchRecords(service.files.folder(tenant))
    if job is None:
        # As OpenAI answers a malformed file: a failed batch with one error per line.
        record.status, record.times["failed_at"] = "failed", now
        await asyncio.to_thread(records.put, record)
        return json_response(batch_object(record, "failed"))
    service.wake_worker()
    record.job_id, record.status, record.times["in_progress_at"] = job.id, "in_progress", now
    await asyncio.to_thread(records.put, record)
    return json_response(batch_object(record, "in_progress"))


async def _refresh(service: Service, tenant: str, record: BatchRecord) -> str:
    """Bring the record up to date with its job; write the files once it ended. The status."""
    if record.job_id is None or record.status in _ENDED:
        return record.status
    job = await service.jobs.store.get_job(record.job_id)
    if job is None:
        return record.status
    now = _clock.wall()
    if job.status not in _ENDED and "expired_at" not in record.times and now >= record.expires_at:
        # The completion window is over: the job stops; what did not finish is batch_expired.
        record.times["expired_at"] = now
        job = await service.jobs.cancel(record.job_id)
        service.feed.poke(job.id)
        await asyncio.to_thread(BatchRecords(service.files.folder(tenant)).put, record)
    record.completed, record.failed = job.counts.succeeded, job.counts.failed
    status = batch_status(record, job)
    if job.status in _ENDED:
        lock = _FINALIZING.setdefault(record.id, asyncio.Lock())
        async with lock:
            records = BatchRecords(service.files.folder(tenant))
            fresh = records.get(record.id) or record
            if fresh.status in _ENDED:
                record.__dict__.update(fresh.__dict__)
                return record.status
            await _finalize(service, tenant, record, job)
            records.put(record)
        _FINALIZING.pop(record.id, None)
        return record.status
    return status


def _tenant_folders(root: Path) -> list[Path]:
    return [p for p in root.iterdir() if p.is_dir()] if root.is_dir() else []


def _records_of(folder: Path) -> list[BatchRecord]:
    return list(BatchRecords(folder).all())


async def sweep_batches(service: Service) -> float | None:
    """Expire every running batch past its window, read or not; return the next expiry, or None.

    A due batch is brought up to date as a read would (`_refresh`): its job is cancelled, it
    is ``finalizing`` while requests in flight end, then ``expired`` with its files, on a
    later sweep. The tenant of a folder is its batch's job's (folders are named by a hash).
    """
    now = _clock.wall()
    earliest: float | None = None
    for folder in await asyncio.to_thread(_tenant_folders, service.files.root):
        records = await asyncio.to_thread(_records_of, folder)
        for record in records:
            if record.job_id is None or record.status in _ENDED:
                continue
            if now < record.expires_at:
                earliest = min(record.expires_at, earliest or record.expires_at)
                continue
            try:
                job = await service.jobs.store.get_job(record.job_id)
                if job is not None and service.files.folder(job.tenant) == folder:
                    await _refresh(service, job.tenant, record)
            except Exception:  # one batch must not stop the others' expiry
                log.exception("could not expire batch %s", record.id)
    return earliest


async def _finalize(service: Service, tenant: str, record: BatchRecord, job: Job) -> None:
    """Write the output and error files of an ended job; set the final status."""
    now = _clock.wall()
    record.times.setdefault("finalizing_at", now)
    if job.status == "failed" and not failed_by_items(job):  # it could not run
        record.status, record.times["failed_at"] = "failed", now
        record.errors = [
            {"code": "batch_failed", "message": job.error or "", "param": None, "line": None}
        ]
        return
    assert record.job_id is not None
    expired = "expired_at" in record.times
    for ok, attr in ((True, "output_file_id"), (False, "error_file_id")):
        lines = _result_lines(service, record.job_id, want_ok=ok, expired=expired)
        first = await anext(lines, None)
        if first is None:
            continue

        async def chunks(
            first: bytes = first, lines: AsyncIterator[bytes] = lines
        ) -> AsyncIterator[bytes]:
            yield first
            async for line in lines:
                yield line

        kind = "output" if ok else "error"
        info = await service.files.save(
            tenant,
            chunks(),
            max_bytes=1 << 40,
            filename=f"{record.id}_{kind}.jsonl",
            purpose="batch_output",
        )
        setattr(record, attr, info.id)
    if expired:
        record.status = "expired"
    elif job.status == "cancelled":
        record.status = "cancelled"
        record.times["cancelled_at"] = now
    else:
        record.status = "completed"
        record.times["completed_at"] = now


async def _result_lines(
    service: Service, job_id: str, *, want_ok: bool, expired: bool
) -> AsyncIterator[bytes]:
    async for item in service.jobs.results(job_id):
        ok, line = result_line(item, expired=expired)
        if ok == want_ok:
            yield (json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


async def _record_or_404(request: Request) -> tuple[Service, str, BatchRecord | Response]:
    service = service_of(request)
    tenant = service.tenant(request)
    batch_id = request.path_params["batch_id"]
    record = BatchRecords(service.files.folder(tenant)).get(batch_id)
    if record is None:
        return service, tenant, openai_error(404, f"No batch found with id '{batch_id}'.")
    return service, tenant, record


async def batch_endpoint(request: Request) -> Response:
    """``GET /v1/batches/{batch_id}``."""
    service, tenant, record = await _record_or_404(request)
    if isinstance(record, Response):
        return record
    status = await _refresh(service, tenant, record)
    return json_response(batch_object(record, status))


async def cancel_batch(request: Request) -> Response:
    """``POST /v1/batches/{batch_id}/cancel``: the job is cancelled; files follow."""
    service, tenant, record = await _record_or_404(request)
    if isinstance(record, Response):
        return record
    if (
        record.job_id is not None
        and record.status == "in_progress"
        and "expired_at" not in record.times
    ):
        job = await service.jobs.cancel(record.job_id)
        service.feed.poke(job.id)
        record.times.setdefault("cancelling_at", _clock.wall())
        BatchRecords(service.files.folder(tenant)).put(record)
    status = await _refresh(service, tenant, record)
    return json_response(batch_object(record, status))


async def list_batches(request: Request) -> Response:
    """``GET /v1/batches?after=ID&limit=N``: newest first."""
    service = service_of(request)
    tenant = service.tenant(request)
    limit = _unknown_param(request, "after", "limit") or _limit(request, 20, 100)
    if isinstance(limit, Response):
        return limit
    records = list(BatchRecords(service.files.folder(tenant)).all())
    cut = page([r.id for r in records], limit=limit, after=request.query_params.get("after"))
    data = [
        batch_object(r, await _refresh(service, tenant, r)) for r in records[cut.start : cut.stop]
    ]
    return json_response(
        {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": cut.has_more,
        }
    )


async def batches_endpoint(request: Request) -> Response:
    """``/v1/batches``: POST creates, GET lists."""
    if request.method == "POST":
        return await create_batch(request)
    return await list_batches(request)
