"""``/v1/jobs``: create, read, list, cancel, retry; ``/v1/files``; ``/v1/service``. Thin."""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from .._json import BadJSON, loads
from .._version import __version__
from ..jobs.file_model import FileItems
from ..jobs.model import TRACEPARENT, JobOptions
from .problems import Problem
from .schemas import BudgetIn, JobCreate, JobOptionsIn
from .state import json_response, only_params, query_choice, query_int, root_of, service_of

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from starlette.requests import Request
    from starlette.responses import Response

    from ..jobs.model import Job
    from .state import Service

__all__ = [
    "cancel_job",
    "create_file",
    "create_job",
    "get_job",
    "jobs_endpoint",
    "list_jobs",
    "retry_job",
    "service_info",
    "set_budget",
]

STATUSES = ("queued", "running", "cancelling", "completed", "failed", "cancelled")
_CURSOR = re.compile(r"^[0-9a-f-]{1,64}$")
_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")  # visible ASCII


async def _body(request: Request, max_bytes: int) -> bytes:
    """The request body, read up to `max_bytes` (413 past it, before reading it all)."""
    declared = request.headers.get("content-length")
    too_big = Problem(
        413,
        f"the request body is over max_body_bytes={max_bytes:,}: upload large inputs with"
        " POST /v1/files and pass its file_id",
    )
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise too_big
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise too_big
        chunks.append(chunk)
    return b"".join(chunks)


def _digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def _same_request(job: Job, key: str | None, body: bytes) -> None:
    """Refuse (422) a replayed Idempotency-Key whose job was made by another request."""
    if job.request_hash is not None and job.request_hash != _digest(body):
        raise Problem(
            422,
            f"the Idempotency-Key {key!r} was already used for another request (job"
            f" {job.id}): send the same body to get that job again, or use a new key",
        )


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _validation_problem(exc: ValidationError, what: str = "job") -> Problem:
    errors = [
        {"field": ".".join(str(p) for p in e["loc"]) or "(body)", "problem": e["msg"]}
        for e in exc.errors(include_url=False, include_input=False)
    ]
    first = errors[0]
    detail = f"the body is not a valid {what}: {first['field']}: {first['problem']}"
    if len(errors) > 1:
        detail += f" (and {len(errors) - 1} more, in 'errors')"
    return Problem(422, detail, errors=errors)


def _options_of(service: Service, spec: JobCreate) -> JobOptions:
    """The job's options; a budget only for the connections' http tasks (else 422)."""
    o = spec.options or JobOptionsIn()
    if o.max_cost_usd is not None and spec.task not in service.base_urls:
        raise Problem(
            422,
            f"options.max_cost_usd: a spend budget applies only to the http:<connection> tasks"
            f" (LLM jobs), and {spec.task!r} is not one; submit it without",
        )
    return JobOptions(
        concurrency=o.concurrency,
        attempts=o.attempts,
        timeout_s=o.timeout_s,
        limiters=tuple(o.limiters),
        max_cost_usd=o.max_cost_usd,
    )


async def create_job(request: Request) -> Response:
    """``POST /v1/jobs``: 202 with the job; with ``Idempotency-Key``, once per key."""
    service = service_of(request)
    tenant = service.tenant(request)
    only_params(request)
    limits = service.limits
    if _media_type(request) != "application/json":
        raise Problem(415, "send the job as JSON, with 'Content-Type: application/json'")
    body = await _body(request, limits.max_body_bytes)
    spec = _job_spec(body)
    key = request.headers.get("idempotency-key")
    if key is not None and not _KEY.match(key):
        raise Problem(422, "the Idempotency-Key header must be 1 to 255 visible ASCII characters")
    items, count = await _items_of(service, tenant, spec)
    if count > limits.max_items_per_job:
        raise Problem(
            413,
            f"the job has {count:,} items, over max_items_per_job="
            f"{limits.max_items_per_job:,}: split it into several jobs",
        )
    if service.app.get_task(spec.task) is None:
        known = ", ".join(service.app.task_names) or "none"
        raise Problem(
            422, f"unknown task {spec.task!r}: this service runs {known} (GET /v1/service)"
        )
    options = _options_of(service, spec)
    traceparent = request.headers.get("traceparent")
    if traceparent is not None and TRACEPARENT.match(traceparent):
        # The caller's trace continues in the workers' spans (a malformed one is ignored).
        options = replace(options, traceparent=traceparent)
    read = False

    def tracked() -> Iterator[Any]:
        nonlocal read
        read = True
        yield from items

    def tracked_line(number: int, line: bytes) -> Any:
        nonlocal read
        read = True
        return items.item(number, line)

    source = replace(items, item=tracked_line) if isinstance(items, FileItems) else tracked()
    # Over the tenant's limit of active jobs, the store raises TooManyActiveJobs: a 429.
    job = await service.jobs.submit(
        spec.task,
        source,
        options=options,
        tenant=tenant,
        idempotency_key=key,
        request_hash=_digest(body),
        max_active_jobs=limits.max_active_jobs_per_tenant,
    )
    headers = {"Location": f"{root_of(request)}/v1/jobs/{job.id}"}
    if not read:  # a replay (the store reads the items of a new job only)
        _same_request(job, key, body)
        headers["Idempotent-Replayed"] = "true"
    service.wake_worker()
    return json_response(await service.view(job, request, fresh=False), 202, headers)


def _job_spec(body: bytes) -> JobCreate:
    """The job a body asks for; `Problem` 422 saying what is wrong with it."""
    try:
        # Read once as any JSON from outside is, for its depth (the schema's parser allows
        # more than MAX_DEPTH, which later readers refuse); the other ways it can be bad
        # (NaN, a lone surrogate, not JSON) are said by the schema or the submit, which
        # name the field or the item.
        loads(body)
    except BadJSON as exc:
        if exc.too_deep:
            raise Problem(422, f"the body {exc.problem}") from None
    try:
        return JobCreate.model_validate_json(body)
    except ValidationError as exc:
        raise _validation_problem(exc) from None


async def _items_of(service: Service, tenant: str, spec: JobCreate) -> tuple[Any, int]:
    """The job's items (inline, or a stored file's lines) and how many there are."""
    if (spec.items is None) == (spec.file_id is None):
        raise Problem(422, "pass the items inline ('items': [...]) or a 'file_id', exactly one")
    if spec.items is not None:
        return spec.items, len(spec.items)
    assert spec.file_id is not None
    info = await service.files.info(tenant, spec.file_id)
    if info is None:
        raise Problem(422, f"no file {spec.file_id!r}: upload it first (POST /v1/files)")
    return service.files.items(spec.file_id), info.items


async def get_job(request: Request) -> Response:
    """``GET /v1/jobs/{job_id}``."""
    service = service_of(request)
    _, job = await service.job(request)
    only_params(request)
    return json_response(await service.view(job, request))


async def list_jobs(request: Request) -> Response:
    """``GET /v1/jobs``: the caller's jobs, newest first, a page at a time."""
    service = service_of(request)
    tenant = service.tenant(request)
    only_params(request, "status", "task", "limit", "cursor")
    status = query_choice(request, "status", STATUSES)
    limit = query_int(request, "limit", 50, 1, 200)
    task = request.query_params.get("task")
    cursor = request.query_params.get("cursor")
    if cursor is not None and not _CURSOR.match(cursor):
        raise Problem(422, f"?cursor={cursor!r}: pass the next_cursor of the previous page")
    jobs = await service.jobs.store.list_jobs(
        status=status,  # type: ignore[arg-type] # checked against STATUSES above
        limit=limit,
        tenant=tenant,
        task=task,
        before=cursor,
    )
    next_cursor = jobs[-1].id if len(jobs) == limit else None
    data = [await service.view(j, request) for j in jobs]
    return json_response({"data": data, "next_cursor": next_cursor})


async def cancel_job(request: Request) -> Response:
    """``POST /v1/jobs/{job_id}/cancel``: 202; in-flight items are cancelled by the worker."""
    service = service_of(request)
    _, job = await service.job(request)
    only_params(request)
    job = await service.jobs.cancel(job.id)
    service.feed.poke(job.id)
    return json_response(await service.view(job, request, fresh=False), 202)


async def retry_job(request: Request) -> Response:
    """``POST /v1/jobs/{job_id}/retry``: 202; failed items run again under the same job."""
    service = service_of(request)
    _, job = await service.job(request)
    only_params(request)
    # Reopening a completed job makes it active: over the tenant's limit, a 429.
    limit = service.limits.max_active_jobs_per_tenant
    retried = await service.jobs.retry_failed(job.id, max_active_jobs=limit)
    service.wake_worker()
    service.feed.poke(job.id)
    job = await service.jobs.get(job.id)
    view = await service.view(job, request, fresh=False)
    return json_response({"retried": retried, "job": view}, 202)


async def set_budget(request: Request) -> Response:
    """``POST /v1/jobs/{job_id}/budget``: 202; the job's new spend budget, and it goes on."""
    service = service_of(request)
    _, job = await service.job(request)
    only_params(request)
    if _media_type(request) != "application/json":
        raise Problem(415, "send the budget as JSON, with 'Content-Type: application/json'")
    body = await _body(request, 4096)
    try:
        spec = BudgetIn.model_validate_json(body)
    except ValidationError as exc:
        raise _validation_problem(exc, "budget") from None
    job = await service.jobs.set_budget(job.id, spec.max_cost_usd)
    service.wake_worker()
    service.feed.poke(job.id)
    return json_response(await service.view(job, request, fresh=False), 202)


async def create_file(request: Request) -> Response:
    """``POST /v1/files``: a JSONL file, streamed into the store; 201 with its id and item count."""
    service = service_of(request)
    tenant = service.tenant(request)
    only_params(request)
    limit = service.limits.max_file_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Problem(
            413,
            f"the file is {int(declared):,} bytes, over max_file_bytes={limit:,}: split it",
        )

    async def chunks() -> AsyncIterator[bytes]:
        async for chunk in request.stream():
            if chunk:
                yield chunk

    info = await service.files.save(
        tenant, chunks(), max_bytes=limit, max_item_bytes=service.jobs.max_item_bytes
    )
    location = f"{root_of(request)}/v1/files/{info.id}"
    return json_response(info.to_dict(), 201, {"Location": location})


async def jobs_endpoint(request: Request) -> Response:
    """``/v1/jobs``: POST creates, GET lists (one route, so 405 answers list both)."""
    if request.method == "POST":
        return await create_job(request)
    return await list_jobs(request)


async def service_info(request: Request) -> Response:
    """``GET /v1/service``: the tasks jobs can run, the limits, and whether keys are needed."""
    service = service_of(request)
    service.tenant(request)
    only_params(request)
    base_urls = service.base_urls
    tasks = []
    for name in service.app.task_names:
        task = service.app.get_task(name)
        assert task is not None
        tasks.append(
            {"name": name, "limiters": list(task.limiters), "base_url": base_urls.get(name)}
        )
    limits = service.limits
    return json_response(
        {
            "version": __version__,
            "auth": "api_key" if service.keys.enabled else "none",
            "tasks": tasks,
            "limits": {
                "max_body_bytes": limits.max_body_bytes,
                "max_file_bytes": limits.max_file_bytes,
                "max_items_per_job": limits.max_items_per_job,
                "max_active_jobs_per_tenant": limits.max_active_jobs_per_tenant,
            },
        }
    )
