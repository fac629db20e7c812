"""Anthropic's Message Batches over Conveyor jobs: create, read, expire, cancel, delete, results.

A Message Batch is a job of the built-in ``http`` task of one of the operator's connections,
one item per valid request (``POST /v1/messages`` with the request's ``params`` as the body):
the same limits, retries, progress, SSE stream, dashboard and spend as any job. What the job
does not know is kept in a small `MessageBatchRecord` (`message_batch_records`). The routes
(`routes_message_batches`) only read requests and call this module.

Which connection: the one named by the header ``x-conveyor-connection`` or, when the operator
configured only one, that one. A header, because the create body is Anthropic's own (it has
no metadata field) and a client sets a header once (``default_headers``) for every call; the
upstream is never named by the caller, only chosen among the operator's connections.

Validation is Anthropic's: a body that is not a batch (not JSON, no ``requests``, none, more
than `MAX_REQUESTS`) is a 400; over 256 MB a 413 (`body.BodyLimit`). A malformed
request (not an object, a bad or repeated ``custom_id``, ``params`` without ``model``,
``max_tokens`` or ``messages``, ``stream``, what the http task's own check refuses...) fails
alone: it is never sent, and its result is ``errored`` with ``invalid_request_error``, while
the others run. Repeated custom_ids error every request that bears them (which one would a
result name?). The ``anthropic-version`` and ``anthropic-beta`` headers of the create call
are sent with each request; the connection adds the credentials.

Counts are live: ``request_counts`` moves as requests finish (Anthropic's stay ``processing``
until the batch ends; the sum is the batch's requests either way), so progress shows through
Anthropic's own interface too. A batch ``ended`` when its job did; past `EXPIRES_AFTER_S`,
a read or the sweep (`sweep_message_batches`) cancels its job, and what did not finish ends
``expired`` instead of ``canceled``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .. import _clock
from ..jobs.errors import InvalidJob, StoreError, StoreUnavailable
from ..jobs.model import TERMINAL
from .anthropic_errors import anthropic_error, error_type
from .message_batch_records import MessageBatchRecord, MessageBatchRecords, Refused
from .message_requests import MAX_REQUESTS, batch_requests, split_requests
from .problems import Problem
from .upstream import BATCH_OPTIONS, pick_connection

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Mapping

    from ..jobs.app import Task
    from ..jobs.model import Job, JobItem
    from .state import Service

__all__ = [
    "CONNECTION_HEADER",
    "batch_object",
    "cancel",
    "create",
    "current",
    "delete",
    "ended",
    "records",
    "result_lines",
    "sweep_message_batches",
]

#: The header that names the connection of a batch, when the service has several.
CONNECTION_HEADER = "x-conveyor-connection"
#: The ``anthropic-version`` sent upstream when the create call named none.
DEFAULT_VERSION = "2023-06-01"
_FORWARDED = ("anthropic-version", "anthropic-beta")
log = logging.getLogger(__name__)
_HTTP_ERROR = re.compile(r"^HTTP (\d{3}): (.*)$", re.DOTALL)


# -- create ---------------------------------------------------------------------------------


def _checker(task: Task, max_item_bytes: int) -> Callable[[Any], str | None]:
    """The job's own rules for an item (size, the task's check), as a message or None."""

    def check(item: Any) -> str | None:
        size = len(json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode())
        if size > max_item_bytes:
            return f"the request is {size:,} bytes, over the {max_item_bytes:,} a request may be"
        try:
            task.check_item(0, item)
        except InvalidJob as exc:
            return str(exc.__cause__ or exc)
        return None

    return check


def records(service: Service, tenant: str) -> MessageBatchRecords:
    """The tenant's Message Batch records (in the job store)."""
    return MessageBatchRecords(service.files.store, tenant)


async def create(
    service: Service, tenant: str, body: bytes, headers: Mapping[str, str]
) -> MessageBatchRecord:
    """Make a batch of the create `body`: its job of the valid requests, and its record.

    Raises `Problem` (400) for a body that is not a batch or no connection to send it to,
    and `TooManyActiveJobs` when the tenant has the most active jobs allowed.
    """
    chosen = headers.get(CONNECTION_HEADER)
    task_name, why = pick_connection(
        service.base_urls, chosen, how=f"the header '{CONNECTION_HEADER}: NAME'"
    )
    task = None if task_name is None else service.app.get_task(task_name)
    if task_name is None or task is None:
        raise Problem(400, why or f"no connection {chosen!r}")
    most = min(MAX_REQUESTS, service.limits.max_items_per_job)
    sent = {"anthropic-version": DEFAULT_VERSION}
    sent |= {name: headers[name] for name in _FORWARDED if headers.get(name)}
    check = _checker(task, service.jobs.max_item_bytes)

    def parse() -> tuple[int, list[dict[str, Any]], list[Refused]]:
        requests = batch_requests(body, most)
        return len(requests), *split_requests(requests, sent, check)

    total, items, refused = await asyncio.to_thread(parse)
    now = _clock.wall()
    record = MessageBatchRecord.new(now=now, total=total)
    record.refused = refused
    if items:
        try:
            job = await service.jobs.submit(
                task_name,
                items,
                options=BATCH_OPTIONS,
                tenant=tenant,
                # A batch is a job of the tenant: it counts against the same limit, in the store.
                max_active_jobs=service.limits.max_active_jobs_per_tenant,
            )
        except InvalidJob as exc:  # what the checks above let pass: the batch as a whole
            raise Problem(400, str(exc)) from None
        record.job_id = job.id
        service.wake_worker()
    else:
        record.ended_at = now  # every request refused: nothing to run
    await records(service, tenant).add(record)
    return record


# -- read, expire, cancel, delete -------------------------------------------------------------


async def _job(service: Service, tenant: str, record: MessageBatchRecord) -> Job | None:
    if record.job_id is None:
        return None
    job = await service.jobs.store.get_job(record.job_id)
    return job if job is not None and job.tenant == tenant else None


def ended(job: Job | None) -> bool:
    """Whether a batch of this job has ended (no job: every request was refused, or it is gone)."""
    return job is None or job.status in TERMINAL


async def current(
    service: Service, tenant: str, record: MessageBatchRecord
) -> tuple[MessageBatchRecord, Job | None]:
    """The batch as it stands now, and its job: expired first if it is past its time.

    Each change is made under the record's row lock: the expiry cancels the job in the same
    transaction, so a batch is expired, or cancelled, once, whichever instance sees it first.
    """
    job = await _job(service, tenant, record)
    now = _clock.wall()
    mine = records(service, tenant)
    if (
        job is not None
        and not ended(job)
        and now >= record.expires_at
        and record.expired_at is None
        and record.cancel_initiated_at is None
    ):

        def expire(r: MessageBatchRecord) -> bool:
            if r.expired_at is not None or r.cancel_initiated_at is not None:
                return False
            r.expired_at = now
            return True

        changed, cancelled = await mine.change(record.id, expire, cancel_job=True)
        record = changed or record
        if cancelled is not None:
            job = cancelled
            service.feed.poke(job.id)
    if record.ended_at is None and ended(job):
        ended_at = job.finished_at if job is not None and job.finished_at else now

        def end(r: MessageBatchRecord) -> bool:
            if r.ended_at is not None:
                return False
            r.ended_at = ended_at
            return True

        record = (await mine.change(record.id, end))[0] or record
    return record, job


async def cancel(
    service: Service, tenant: str, record: MessageBatchRecord
) -> tuple[MessageBatchRecord, Job | None]:
    """Cancel the batch (nothing if it ended or expired); what finished is kept."""
    record, job = await current(service, tenant, record)
    if job is None or ended(job) or record.expired_at is not None:
        return record, job
    now = _clock.wall()

    def initiate(r: MessageBatchRecord) -> bool:
        if r.cancel_initiated_at is not None or r.expired_at is not None:
            return False
        r.cancel_initiated_at = now
        return True

    changed, cancelled = await records(service, tenant).change(record.id, initiate, cancel_job=True)
    if cancelled is not None:
        service.feed.poke(cancelled.id)
    return await current(service, tenant, changed or record)


async def delete(service: Service, tenant: str, record: MessageBatchRecord) -> None:
    """Delete an ended batch's record; `Problem` 400 while it is still processing.

    Its job stays in the job store (with its results), as any finished job.
    """
    record, job = await current(service, tenant, record)
    if not ended(job):
        raise Problem(
            400,
            f"Message Batch {record.id} is still processing: cancel it and wait until it has"
            " ended, then delete it",
        )
    await records(service, tenant).delete(record.id)


async def sweep_message_batches(service: Service) -> float | None:
    """Expire every batch past its time, read or not; return when the next falls due, or None.

    A batch whose end was recorded is passed by: the store keeps it as ended.
    """
    due, following = await service.files.store.due_batches("anthropic", due=_clock.wall())
    for row in due:
        try:
            await current(service, row.tenant, MessageBatchRecord.from_json(row.record))
        except (StoreUnavailable, StoreError):
            raise  # the sweeper says it once
        except Exception:  # one batch must not stop the others' expiry
            log.exception("could not expire message batch %s", row.id)
    return following


# -- what the API shows ---------------------------------------------------------------------


def _rfc3339(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _counts(record: MessageBatchRecord, job: Job | None) -> dict[str, int]:
    """The requests by outcome so far; they always add up to the batch's requests."""
    refused = len(record.refused)
    if job is None:  # none ran, or the job is gone from the store: errored
        errored = record.total if record.job_id is not None else refused
        return {"processing": 0, "succeeded": 0, "errored": errored, "canceled": 0, "expired": 0}
    c = job.counts
    unsettled = c.pending + c.running
    failed_job = job.status == "failed"
    stopped = c.cancelled
    return {
        "processing": 0 if failed_job else unsettled,
        "succeeded": c.succeeded,
        "errored": refused + c.failed + (unsettled if failed_job else 0),
        "canceled": 0 if record.expired_at is not None else stopped,
        "expired": stopped if record.expired_at is not None else 0,
    }


def batch_object(record: MessageBatchRecord, job: Job | None, base_url: str) -> dict[str, Any]:
    """The batch as Anthropic's API shows it; `base_url` is the service's (for results_url)."""
    done = ended(job)
    if done:
        status = "ended"
    elif record.expired_at is None and (
        record.cancel_initiated_at is not None or (job is not None and job.status == "cancelling")
    ):
        status = "canceling"
    else:
        status = "in_progress"
    results = f"{base_url.rstrip('/')}/v1/messages/batches/{record.id}/results"
    return {
        "id": record.id,
        "type": "message_batch",
        "processing_status": status,
        "request_counts": _counts(record, job),
        "ended_at": _rfc3339(record.ended_at) if done else None,
        "created_at": _rfc3339(record.created_at),
        "expires_at": _rfc3339(record.expires_at),
        "archived_at": None,
        "cancel_initiated_at": _rfc3339(record.cancel_initiated_at),
        "results_url": results if done else None,
    }


def _failure(item: JobItem) -> dict[str, Any]:
    """A request the upstream refused, or that could not be sent, as Anthropic's error."""
    text = item.error_message or "the request failed"
    found = _HTTP_ERROR.match(text)
    if found is not None:
        return anthropic_error(error_type(int(found.group(1))), found.group(2))
    timed_out = "timeout" in (item.error_type or "").lower()
    return anthropic_error("timeout_error" if timed_out else "api_error", text)


def _result(item: JobItem, *, expired: bool, job_error: str | None) -> dict[str, Any]:
    if item.state == "succeeded" and isinstance(item.result, dict):
        return {"type": "succeeded", "message": item.result.get("body")}
    if item.state == "cancelled":
        return {"type": "expired" if expired else "canceled"}
    if item.state == "failed":
        return {"type": "errored", "error": _failure(item)}
    why = job_error or "the batch ended before this request ran"
    return {"type": "errored", "error": anthropic_error("api_error", why)}


def _line(custom_id: object, result: dict[str, Any]) -> bytes:
    line = {"custom_id": custom_id, "result": result}
    return (json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


async def result_lines(
    service: Service, record: MessageBatchRecord, job: Job | None
) -> AsyncIterator[bytes]:
    """One JSONL line per request, in the batch's order, read from the store a page at a time.

    The refused requests take their places among the job's items (which are the others, in
    order).
    """
    refused = iter(record.refused)
    waiting = next(refused, None)
    position = 0
    if job is not None:
        expired = record.expired_at is not None
        async for item in service.jobs.results(job.id):
            while waiting is not None and waiting.position == position:
                yield _line(waiting.custom_id, _invalid(waiting))
                waiting, position = next(refused, None), position + 1
            custom_id = item.input.get("custom_id") if isinstance(item.input, dict) else None
            yield _line(custom_id, _result(item, expired=expired, job_error=job.error))
            position += 1
    while waiting is not None:
        yield _line(waiting.custom_id, _invalid(waiting))
        waiting = next(refused, None)


def _invalid(refused: Refused) -> dict[str, Any]:
    return {"type": "errored", "error": anthropic_error("invalid_request_error", refused.message)}
