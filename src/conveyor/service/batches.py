"""OpenAI's Batch API over Conveyor jobs: the batch record, the input check, the output lines.

A batch is a Conveyor job of the built-in ``http`` task through an operator's connection: the
same limits, retries, progress, SSE stream and dashboard as any job. What OpenAI's interface
adds is kept here, apart from the lifecycle (`openai_batches`) and the routes
(`routes_batches`):

- `check_input`: the input file read line by line as OpenAI validates it: each line a JSON
  object with a unique ``custom_id``, ``method`` POST, the batch's ``url`` and a ``body``,
  at most `MAX_LINE_BYTES` long. Any bad line (not JSON, NaN or Infinity, a lone surrogate,
  nested too deep, too long, ...) makes the batch ``failed`` with one error per line, each
  naming its line number (never a 4xx for the whole file, never a 5xx). A line's ``headers``,
  if it has any, are never sent (OpenAI's format has none); still, one that tries to choose
  where its request lands (``Host``, ``X-Forwarded-*``...) or to bring credentials fails its
  line, as it fails a job's item, rather than be dropped without a word.
- `BatchRecord`: what OpenAI's batch object says beyond the job (its files, metadata and
  timestamps), kept as a row of the job store (`BatchRecords`: one tenant's, changed under
  the row's lock).
- `batch_status`: the job's status as OpenAI's (``in_progress``, ``finalizing``, ...);
  `result_line`: one line of the output file (successes) or the error file (the rest).

The upstream is never named by the request: it is the connection given in the batch's
``metadata`` (``conveyor_connection``) or, when the operator configured one only, that one.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from .._json import BadJSON
from ..http.request import credential_headers, headers_problem
from ..jobs.client import DEFAULT_MAX_ITEM_BYTES
from ..jobs.file_model import BatchRow
from ..jobs.settle import failed_by_items
from .batch_records import TenantBatchRecords
from .json_object import json_object

if TYPE_CHECKING:
    from collections.abc import Iterable

    from ..jobs.model import Job, JobItem

__all__ = [
    "ENDED",
    "ENDPOINTS",
    "WINDOWS",
    "BatchRecord",
    "BatchRecords",
    "InputCheck",
    "batch_object",
    "batch_status",
    "check_input",
    "could_not_run",
    "result_line",
]

#: The endpoints a batch may target: OpenAI's list, and Anthropic's Messages (for a connection
#: to a Messages-compatible API; each line's body is then a Messages request).
ENDPOINTS = (
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/completions",
    "/v1/responses",
    "/v1/messages",
)
#: The completion windows a batch may ask for, in seconds (OpenAI's: ``24h`` only).
WINDOWS = {"24h": 86_400.0}
#: The longest line of a batch input: the largest item a job takes (`Jobs.max_item_bytes`).
MAX_LINE_BYTES = DEFAULT_MAX_ITEM_BYTES
#: How many per-line errors a failed batch shows at most.
MAX_ERRORS = 100
#: The metadata key that chooses the connection (the upstream) of a batch.
CONNECTION_KEY = "conveyor_connection"
#: The statuses a batch ends in: its record is final (its files written, if any).
ENDED = frozenset({"completed", "cancelled", "failed", "expired"})
#: The times of a batch's steps (`BatchRecord.times`), named as OpenAI names them.
_TIMES = (
    "in_progress_at",
    "finalizing_at",
    "completed_at",
    "failed_at",
    "expired_at",
    "cancelling_at",
    "cancelled_at",
)
_ID = re.compile(r"^batch_[0-9A-Za-z]{1,58}$")


def _error(line: int, code: str, message: str, param: str | None = None) -> dict[str, Any]:
    return {"code": code, "message": message, "param": param, "line": line}


class InputCheck:
    """`check_input` a line at a time: `lines` as they come, then `result`. Pure."""

    def __init__(self, endpoint: str, *, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self.endpoint = endpoint
        self.max_line_bytes = max_line_bytes
        self.count = 0
        self.errors: list[dict[str, Any]] = []
        self._number = 0
        self._seen: set[str] = set()

    def lines(self, lines: Iterable[bytes]) -> None:
        """Check the next lines of the file (with or without their newline)."""
        for raw in lines:
            self._number += 1
            if not raw.strip():
                continue
            self.count += 1
            number = self._number
            if len(raw.rstrip(b"\r\n")) > self.max_line_bytes:
                msg = (
                    f"Line {number} is over {self.max_line_bytes:,} bytes, the largest request"
                    " a batch takes: shorten it, or send it another way"
                )
                problem: dict[str, Any] | None = _error(number, "line_too_large", msg)
            else:
                problem = _line_problem(raw, number, self.endpoint, self._seen)
            if problem is not None and len(self.errors) < MAX_ERRORS:
                self.errors.append(problem)

    def result(self) -> tuple[int, list[dict[str, Any]]]:
        """(requests, errors) of the whole file: an empty one is an error too."""
        if self.count == 0:
            return 0, [*self.errors, _error(1, "empty_file", "The batch input file is empty.")]
        return self.count, list(self.errors)


def check_input(
    lines: Iterable[bytes], endpoint: str, *, max_line_bytes: int = MAX_LINE_BYTES
) -> tuple[int, list[dict[str, Any]]]:
    """Check every line of a batch input; return (requests, errors). Pure.

    A line longer than `max_line_bytes` (the largest item a job takes) is an error of its
    own; the reader may give only its first ``max_line_bytes + 1`` bytes
    (`conveyor.jobs.stores.file_rules.split_lines`).

    >>> check_input([b'{"custom_id": "a", "method": "POST", "url": "/v1/embeddings",'
    ...              b' "body": {"input": "x"}}'], "/v1/embeddings")
    (1, [])
    >>> check_input([b"{oops"], "/v1/embeddings")[1][0]["code"]
    'invalid_json_line'
    """
    check = InputCheck(endpoint, max_line_bytes=max_line_bytes)
    check.lines(lines)
    return check.result()


def _line_problem(  # noqa: PLR0911 - one return per kind of problem
    raw: bytes, number: int, endpoint: str, seen: set[str]
) -> dict[str, Any] | None:
    try:
        data = json_object(raw)
    except BadJSON as exc:  # not JSON, NaN, a lone surrogate, nested too deep, not UTF-8...
        return _error(number, "invalid_json_line", f"Line {number} {exc.problem}.")
    custom_id = data.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        msg = f"Line {number} has no custom_id (a non-empty string)."
        return _error(number, "missing_required_parameter", msg, "custom_id")
    if custom_id in seen:
        msg = f"The custom_id {custom_id!r} of line {number} is used by an earlier line."
        return _error(number, "duplicate_custom_id", msg, "custom_id")
    seen.add(custom_id)
    if data.get("method") != "POST":
        msg = f"Line {number}: the method must be POST."
        return _error(number, "invalid_value", msg, "method")
    if data.get("url") != endpoint:
        msg = f"Line {number}: the url {data.get('url')!r} is not the batch's endpoint {endpoint}."
        return _error(number, "mismatched_endpoint", msg, "url")
    if not isinstance(data.get("body"), dict):
        msg = f"Line {number}: the body must be a JSON object."
        return _error(number, "invalid_value", msg, "body")
    return _headers_error(data.get("headers"), number)


def _headers_error(headers: object, number: int) -> dict[str, Any] | None:
    """The same header rule as a job's items (`conveyor.jobs.http_task`), as a line's error."""
    if headers is None:
        return None
    problem = headers_problem(headers)
    if problem is None and isinstance(headers, dict):
        own = credential_headers(headers)
        if own:
            problem = (
                f"sets {', '.join(own)}: lines may not carry credentials; the operator's"
                " connection adds them"
            )
    if problem is None:
        return None
    return _error(number, "invalid_value", f"Line {number} {problem}.", "headers")


@dataclass(kw_only=True)
class BatchRecord:
    """What a batch is beyond its job; stored as JSON (a `BatchRow` of the job store)."""

    id: str
    endpoint: str
    input_file_id: str
    completion_window: str
    metadata: dict[str, str] | None
    created_at: float
    job_id: str | None = None
    status: str = "validating"  # kept for the statuses a job does not have
    errors: list[dict[str, Any]] = field(default_factory=list)
    output_file_id: str | None = None
    error_file_id: str | None = None
    total: int = 0
    completed: int = 0
    failed: int = 0
    times: dict[str, float] = field(default_factory=dict)  # in_progress_at, failed_at, ...
    #: Who writes the batch's files now (a random token), and since when: one service
    #: instance at a time, taken under the row's lock (`openai_batches`); None: nobody.
    finalizer: str | None = None
    finalizer_at: float | None = None

    @classmethod
    def new(
        cls, *, endpoint: str, input_file_id: str, window: str, metadata: Any, now: float
    ) -> BatchRecord:
        """A batch just created."""
        return cls(
            id=f"batch_{uuid.uuid4().hex}",
            endpoint=endpoint,
            input_file_id=input_file_id,
            completion_window=window,
            metadata=metadata,
            created_at=now,
        )

    @property
    def expires_at(self) -> float:
        """When the batch expires if it has not finished (its completion window ends)."""
        return self.created_at + WINDOWS.get(self.completion_window, 86_400.0)

    def to_row(self, tenant: str) -> BatchRow:
        """The record as the job store keeps it."""
        record = json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":"))
        ended = self.status in ENDED
        return BatchRow(
            self.id, tenant, "openai", self.job_id, self.created_at, self.expires_at, ended, record
        )

    @classmethod
    def from_row(cls, row: BatchRow) -> BatchRecord:
        """A record read back from the store."""
        return cls(**json.loads(row.record))


class BatchRecords(TenantBatchRecords[BatchRecord]):
    """The OpenAI batch records of one tenant, in the job store (see `TenantBatchRecords`)."""

    kind = "openai"
    id_pattern = _ID

    def read(self, row: BatchRow) -> BatchRecord:
        """The record a row of the store holds."""
        return BatchRecord.from_row(row)

    async def all(self) -> list[BatchRecord]:
        """Every record, newest first."""
        return [self.read(row) for row in await self.store.batches(self.tenant, self.kind)]


#: A job's status as OpenAI's batch status, before the output files are written.
_JOB_TO_BATCH = {
    "queued": "in_progress",
    "running": "in_progress",
    "cancelling": "cancelling",
    "completed": "finalizing",
    "cancelled": "cancelling",  # the files are still to be written, then "cancelled"
    "failed": "failed",
}


def could_not_run(job: Job) -> bool:
    """Whether the batch is OpenAI's ``failed``: its job could not run.

    A batch whose every request failed is ``completed``, with an error file, as OpenAI's is
    (its job is ``failed`` by its items: `conveyor.jobs.settle.failed_by_items`).
    """
    return job.status == "failed" and not failed_by_items(job)


def batch_status(record: BatchRecord, job: Job | None) -> str:
    """OpenAI's status of a batch, from its record and (while it runs) its job."""
    if record.status in ENDED or job is None:
        return record.status
    if "expired_at" in record.times:
        return "finalizing"  # expired: its job is being stopped, then the files are written
    if job.status == "failed" and not could_not_run(job):
        return "finalizing"  # requests that failed complete it: their lines go to the error file
    return _JOB_TO_BATCH[job.status]


def _http_status(message: str | None) -> int | None:
    """The status of an ``HTTP 429: ...`` error message, else None."""
    if message and message.startswith("HTTP ") and message[5:8].isdigit():
        return int(message[5:8])
    return None


_UNFINISHED = {
    False: {"code": "batch_cancelled", "message": "The batch was cancelled."},
    True: {
        "code": "batch_expired",
        "message": "This request could not be executed before the completion window expired.",
    },
}


def result_line(item: JobItem, *, expired: bool = False) -> tuple[bool, dict[str, Any]]:
    """One output line of an item: ``(True, line)`` for the output file, False for errors.

    An item that never finished is ``batch_expired`` if the batch `expired`, else
    ``batch_cancelled``.
    """
    custom_id = item.input.get("custom_id") if isinstance(item.input, dict) else None
    line: dict[str, Any] = {"id": f"batch_req_{uuid.uuid4().hex}", "custom_id": custom_id}
    if item.state == "succeeded" and isinstance(item.result, dict):
        headers = item.result.get("headers") or {}
        line["response"] = {
            "status_code": item.result.get("status_code", 200),
            "request_id": headers.get("x-request-id", ""),
            "body": item.result.get("body"),
        }
        line["error"] = None
        return True, line
    line["response"] = None
    if item.state in {"cancelled", "pending"}:
        line["error"] = dict(_UNFINISHED[expired])
    else:
        status = _http_status(item.error_message)
        code = f"http_{status}" if status is not None else (item.error_type or "error")
        line["error"] = {"code": code, "message": item.error_message or "failed"}
    return False, line


def batch_object(record: BatchRecord, status: str) -> dict[str, Any]:
    """The batch as OpenAI's API shows it, in the shape of OpenAI's OpenAPI document.

    What the batch does not have yet (`errors`, the files, the times of steps not taken) is
    absent: the document allows no ``null`` for these (OpenAI's live API sends ``null``).
    """
    shown = {name: int(record.times[name]) for name in _TIMES if name in record.times}
    if status != "expired":
        shown.pop("expired_at", None)
    optional: dict[str, Any] = {
        "errors": {"object": "list", "data": record.errors} if record.errors else None,
        "output_file_id": record.output_file_id,
        "error_file_id": record.error_file_id,
    }
    return {
        "id": record.id,
        "object": "batch",
        "endpoint": record.endpoint,
        "input_file_id": record.input_file_id,
        "completion_window": record.completion_window,
        "status": status,
        "created_at": int(record.created_at),
        "expires_at": int(record.expires_at),
        **shown,
        **{name: value for name, value in optional.items() if value is not None},
        "request_counts": {
            "total": record.total,
            "completed": record.completed,
            "failed": record.failed,
        },
        "metadata": record.metadata,
    }
