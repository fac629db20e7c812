"""OpenAI's batches over Conveyor jobs: create, read, expire, finalize, cancel, list, sweep.

The lifecycle of a batch, apart from its routes (`routes_batches`, which only read requests and
answer in OpenAI's shapes) and its pure parts (`batches`: the input check, the record, the
status, the output lines). Every record is a row of the job store (`batches.BatchRecords`), so
any number of service instances on one store serve every batch, and each change of a record
is made under its row's lock:

- **create** checks the body (`BatchRefused` in OpenAI's terms), then the input file a chunk
  at a time (`batches.InputCheck`: any bad line fails the batch with per-line errors), and
  makes its job from the file's lines in the transaction that creates the job.
- **expire**: a read, or the sweep, that finds a batch past its completion window marks it
  expired and cancels its job, in one transaction.
- **finalize**: once the job has ended, one instance takes the batch (a claim in its record,
  under the row's lock, lapsing after `FINALIZE_LEASE_S`), writes the output and error files
  (not yet visible), then, under the lock again, makes them visible with the batch's final
  status, if its claim still holds (else they are removed). A reader meanwhile sees
  ``finalizing``; a finalizer that died is taken over once its claim lapses.
- **sweep** (`sweep_batches`, run every few seconds by the app: `.sweeps`) does for the batches
  past their window what a read does: a batch nobody reads expires all the same.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from typing import TYPE_CHECKING, Any

from .. import _clock
from .._json import BadJSON, loads
from ..jobs.errors import InvalidJob, StoreError, StoreUnavailable, TooManyActiveJobs
from ..jobs.file_model import CHUNK_BYTES, FileItems
from ..jobs.model import TERMINAL
from .batches import (
    CONNECTION_KEY,
    ENDED,
    ENDPOINTS,
    WINDOWS,
    BatchRecord,
    BatchRecords,
    InputCheck,
    batch_status,
    could_not_run,
    result_line,
)
from .files import quietly
from .json_object import json_object
from .problems import too_many_active_detail
from .upstream import BATCH_OPTIONS, pick_connection

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from ..jobs.file_model import Written
    from ..jobs.model import Job
    from .state import Service

__all__ = ["FINALIZE_LEASE_S", "BatchRefused", "cancel", "create", "current", "sweep_batches"]

log = logging.getLogger(__name__)
#: A claim to write a batch's files lapses after this long, in seconds, unless renewed (its
#: finalizer renews it every third of that while it writes): another instance then takes the
#: batch over (the first one's files, if it comes back, are removed unseen). So a finalizer
#: that died holds its batch ``finalizing`` for this long at most.
FINALIZE_LEASE_S = 30.0
_ITEM = re.compile(r"^item (\d+) (.*)$", re.DOTALL)


class BatchRefused(Exception):
    """A create refused, as OpenAI says it: `status`, `message`, and the `param` and `code`."""

    def __init__(
        self, status: int, message: str, *, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


def records(service: Service, tenant: str) -> BatchRecords:
    """The tenant's batch records."""
    return BatchRecords(service.files.store, tenant)


# -- create -----------------------------------------------------------------------------------


def _metadata(value: object) -> dict[str, str] | None:
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
        msg = "metadata must be at most 16 string keys (64 chars) and values (512 chars)"
        raise BatchRefused(400, msg, param="metadata")
    return value


def _spec(body: bytes) -> tuple[str, str, dict[str, str] | None, object]:
    """The endpoint, window, metadata and input file id a create body asks for."""
    try:
        spec = json_object(body)
    except BadJSON as exc:
        raise BatchRefused(400, f"the body {exc.problem}") from None
    endpoint, window = spec.get("endpoint"), spec.get("completion_window")
    if endpoint not in ENDPOINTS:
        msg = f"endpoint must be one of {', '.join(ENDPOINTS)}"
        raise BatchRefused(400, msg, param="endpoint")
    if not isinstance(window, str) or window not in WINDOWS:
        windows = ", ".join(repr(w) for w in WINDOWS)
        msg = f"completion_window must be one of {windows}"
        raise BatchRefused(400, msg, param="completion_window")
    return endpoint, window, _metadata(spec.get("metadata")), spec.get("input_file_id")


async def _check(service: Service, tenant: str, record: BatchRecord, longest: int) -> None:
    """Check the input file as OpenAI does, a chunk's lines at a time in a thread."""
    check = InputCheck(record.endpoint, max_line_bytes=longest)
    lines: list[bytes] = []
    size = 0
    async for line in service.files.lines(tenant, record.input_file_id, longest):
        lines.append(line)
        size += len(line)
        if size >= CHUNK_BYTES:
            await asyncio.to_thread(check.lines, lines)
            lines, size = [], 0
    await asyncio.to_thread(check.lines, lines)
    record.total, record.errors = check.result()


def _refused_line(exc: InvalidJob, numbers: dict[int, None]) -> dict[str, Any]:
    """The per-line error of an item the job refused ("item N ..."), as OpenAI's shape."""
    found = _ITEM.match(str(exc))
    lines = list(numbers)
    if found is None or int(found.group(1)) >= len(lines):
        return {"code": "invalid_request", "message": str(exc), "param": None, "line": None}
    line = lines[int(found.group(1))]
    message = f"Line {line} {found.group(2)}"
    return {"code": "invalid_request", "message": message, "param": None, "line": line}


async def _start(service: Service, tenant: str, task: str, record: BatchRecord) -> Job | None:
    """Check the batch's input file and submit its job; None if a line is bad (`errors`).

    Raises `TooManyActiveJobs` when the tenant has the most active jobs allowed.
    """
    longest = service.jobs.max_item_bytes
    await _check(service, tenant, record, longest)
    if record.errors:
        return None
    # The line number of each item, in order (a dict: the same line read again, if the
    # store runs the transaction again, keeps its place).
    numbers: dict[int, None] = {}

    def item(number: int, line: bytes) -> dict[str, Any]:
        numbers.setdefault(number)
        data = loads(line)  # checked by InputCheck: it is a JSON object
        return {k: data[k] for k in ("custom_id", "method", "url", "body")}

    try:
        return await service.jobs.submit(
            task,
            FileItems(record.input_file_id, item, max_line_bytes=longest),
            options=BATCH_OPTIONS,
            tenant=tenant,
            # A batch is a job of the tenant: it counts against the same limit, in the store.
            max_active_jobs=service.limits.max_active_jobs_per_tenant,
        )
    except InvalidJob as exc:  # what the job refuses that the check let pass
        record.errors = [_refused_line(exc, numbers)]
        return None


async def create(service: Service, tenant: str, body: bytes) -> BatchRecord:
    """Make a batch of the create `body`: check it, make its job, store its record.

    A malformed input file makes a ``failed`` batch with one error per line, as OpenAI's.
    Raises `BatchRefused` for a body OpenAI refuses, an unknown file or no connection, and
    when the tenant has the most active jobs allowed (429).
    """
    endpoint, window, metadata, file_id = _spec(body)
    if not isinstance(file_id, str) or await service.files.info(tenant, file_id) is None:
        raise BatchRefused(400, f"No such File object: {file_id}", param="input_file_id")
    chosen = (metadata or {}).get(CONNECTION_KEY)
    task, why = pick_connection(
        service.base_urls, chosen, how=f"metadata={{'{CONNECTION_KEY}': NAME}}"
    )
    if task is None:
        raise BatchRefused(400, why, param="metadata")
    now = _clock.wall()
    record = BatchRecord.new(
        endpoint=endpoint, input_file_id=file_id, window=window, metadata=metadata, now=now
    )
    try:
        job = await _start(service, tenant, task, record)
    except TooManyActiveJobs as exc:
        detail = too_many_active_detail(exc)
        raise BatchRefused(429, detail, code="rate_limit_exceeded") from None
    if job is None:
        # As OpenAI answers a malformed file: a failed batch with one error per line.
        record.status, record.times["failed_at"] = "failed", now
    else:
        service.wake_worker()
        record.job_id, record.status, record.times["in_progress_at"] = job.id, "in_progress", now
    await records(service, tenant).add(record)
    return record


# -- read: expire, finalize --------------------------------------------------------------------


async def current(service: Service, tenant: str, record: BatchRecord) -> tuple[BatchRecord, str]:
    """The batch as it stands now, and its status: expired and finalized first if due."""
    if record.job_id is None or record.status in ENDED:
        return record, record.status
    job = await service.jobs.store.get_job(record.job_id)
    if job is None:
        return record, record.status
    now = _clock.wall()
    if job.status not in TERMINAL and "expired_at" not in record.times and now >= record.expires_at:
        # The completion window is over: the job stops; what did not finish is batch_expired.
        def expire(r: BatchRecord) -> bool:
            if "expired_at" in r.times or r.status in ENDED:
                return False
            r.times["expired_at"] = now
            return True

        changed, cancelled = await records(service, tenant).change(
            record.id, expire, cancel_job=True
        )
        record = changed or record
        if cancelled is not None:
            job = cancelled
            service.feed.poke(job.id)
    record.completed, record.failed = job.counts.succeeded, job.counts.failed
    if job.status in TERMINAL and record.status not in ENDED:
        record = await _finalize(service, tenant, record, job)
    return record, batch_status(record, job)


async def _finalize(service: Service, tenant: str, record: BatchRecord, job: Job) -> BatchRecord:
    """Write the files of an ended job's batch and make them visible with its final status.

    One instance at a time (a claim in the record); the others see ``finalizing``.
    """
    token, now = uuid.uuid4().hex, _clock.wall()
    mine = records(service, tenant)

    def claim(r: BatchRecord) -> bool:
        if r.status in ENDED:
            return False
        held = r.finalizer is not None and now - (r.finalizer_at or 0.0) < FINALIZE_LEASE_S
        if held:
            return False
        r.finalizer, r.finalizer_at = token, now
        r.times.setdefault("finalizing_at", now)
        return True

    claimed, _ = await mine.change(record.id, claim)
    if claimed is None or claimed.finalizer != token:
        return _counted(claimed or record, record)
    written: dict[str, Written] = {}
    renewing = asyncio.create_task(_renew(mine, record.id, token))
    try:
        if not could_not_run(job):
            written = await _write_files(service, tenant, claimed, job)

        def finish(r: BatchRecord) -> bool:
            if r.finalizer != token or r.status in ENDED:
                return False
            _final(r, job, {name: w.id for name, w in written.items()}, _clock.wall())
            return True

        done, _ = await mine.change(record.id, finish, publish=list(written.values()))
    except BaseException:
        # Let another read take it at once, as far as the store can be reached (else the
        # claim lapses). The files written are left to the uploads' sweep: they are not
        # visible unless the final change went through (its answer lost), when they must stay.
        await quietly(mine.change(record.id, lambda r: _release(r, token)))
        raise
    finally:
        renewing.cancel()
        await asyncio.gather(renewing, return_exceptions=True)
    return _counted(done or claimed, record)


async def _renew(mine: BatchRecords, batch_id: str, token: str) -> None:
    """Renew the claim `token` every third of `FINALIZE_LEASE_S`, while the files are written."""

    def renew(r: BatchRecord) -> bool:
        if r.finalizer != token or r.status in ENDED:
            return False
        r.finalizer_at = _clock.wall()
        return True

    while True:
        await asyncio.sleep(FINALIZE_LEASE_S / 3)
        try:
            await mine.change(batch_id, renew)
        except StoreUnavailable:  # the writes meet it too; the claim lapses if it lasts
            log.warning("batch %s: its finalize claim could not be renewed (store down)", batch_id)


def _counted(stored: BatchRecord, read: BatchRecord) -> BatchRecord:
    """The stored record with the counts just read from the job (while it is not final)."""
    if stored.status not in ENDED:
        stored.completed, stored.failed = read.completed, read.failed
    return stored


def _release(record: BatchRecord, token: str) -> bool:
    if record.finalizer != token:
        return False
    record.finalizer = record.finalizer_at = None
    return True


async def _write_files(
    service: Service, tenant: str, record: BatchRecord, job: Job
) -> dict[str, Written]:
    """The output (successes) and error files, written, not yet visible."""
    expired = "expired_at" in record.times
    written: dict[str, Written] = {}
    try:
        for ok, name in ((True, "output_file_id"), (False, "error_file_id")):
            kind = "output" if ok else "error"
            lines = _result_lines(service, job.id, want_ok=ok, expired=expired)
            w = await service.files.write(
                tenant, lines, filename=f"{record.id}_{kind}.jsonl", purpose="batch_output"
            )
            if w is not None:
                written[name] = w
    except BaseException:
        for w in written.values():  # not visible yet: nobody will
            await quietly(service.files.discard(w))
        raise
    return written


def _final(record: BatchRecord, job: Job, files: dict[str, str], now: float) -> None:
    """Set the final status of a batch whose job ended, with its files' ids."""
    record.finalizer = record.finalizer_at = None
    record.times.setdefault("finalizing_at", now)
    record.completed, record.failed = job.counts.succeeded, job.counts.failed
    if could_not_run(job):
        record.status, record.times["failed_at"] = "failed", now
        record.errors = [
            {"code": "batch_failed", "message": job.error or "", "param": None, "line": None}
        ]
        return
    record.output_file_id = files.get("output_file_id")
    record.error_file_id = files.get("error_file_id")
    if "expired_at" in record.times:
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


# -- cancel, sweep -----------------------------------------------------------------------------


async def cancel(service: Service, tenant: str, record: BatchRecord) -> tuple[BatchRecord, str]:
    """Cancel the batch's job (nothing if it ended or expired); the files follow."""
    if record.job_id is not None and record.status == "in_progress":
        now = _clock.wall()

        def cancelling(r: BatchRecord) -> bool:
            if r.status != "in_progress" or "expired_at" in r.times:
                return False
            r.times.setdefault("cancelling_at", now)
            return True

        changed, job = await records(service, tenant).change(record.id, cancelling, cancel_job=True)
        record = changed or record
        if job is not None:
            service.feed.poke(job.id)
    return await current(service, tenant, record)


async def sweep_batches(service: Service) -> float | None:
    """Expire every running batch past its window, read or not; return the next expiry, or None.

    A due batch is brought up to date as a read would (`current`): its job is cancelled, it
    is ``finalizing`` while requests in flight end, then ``expired`` with its files, on a
    later sweep.
    """
    due, following = await service.files.store.due_batches("openai", due=_clock.wall())
    for row in due:
        try:
            await current(service, row.tenant, BatchRecord.from_row(row))
        except (StoreUnavailable, StoreError):
            raise  # the sweeper says it once
        except Exception:  # one batch must not stop the others' expiry
            log.exception("could not expire batch %s", row.id)
    return following
