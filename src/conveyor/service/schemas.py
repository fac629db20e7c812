"""The request and response bodies, as pydantic models. Pydantic lives here only.

They validate what comes in, and are the source of the OpenAPI document's schemas
(``openapi.py``).

Responses are built as plain dicts by ``views.py`` (no model round trip on the hot status
path); the schemathesis run in the tests checks that they match these models.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

# The store's own: a status or state added there is one the service shows and documents.
from ..jobs.model import ItemState, JobStatus  # noqa: TC001 - pydantic reads them at run time

__all__ = [
    "BatchCreate",
    "BatchList",
    "BatchOut",
    "BudgetIn",
    "FileOut",
    "HealthOut",
    "ItemOut",
    "ItemPage",
    "JobCreate",
    "JobOptionsIn",
    "JobOut",
    "JobPage",
    "OpenAIErrorOut",
    "OpenAIFileDeleted",
    "OpenAIFileList",
    "OpenAIFileOut",
    "ProblemOut",
    "RetryOut",
    "ServiceOut",
]

_STRICT = ConfigDict(extra="forbid", strict=True)


class JobOptionsIn(BaseModel):
    """How the job's items run (every field optional)."""

    model_config = _STRICT

    concurrency: int = Field(default=10, ge=1, le=10_000, description="items in flight, per worker")
    attempts: int = Field(default=1, ge=1, le=100, description="attempts per item (1: no retries)")
    timeout_s: float | None = Field(
        default=None, gt=0, le=86_400, description="one attempt's limit, seconds (null: none)"
    )
    limiters: list[str] = Field(
        default_factory=list,
        max_length=16,
        description="names of the service's shared limiters each attempt goes through",
    )
    max_cost_usd: float | None = Field(
        default=None,
        gt=0,
        le=1_000_000,
        description="http:<connection> jobs: the spend budget in US dollars; an item starts only"
        " if the spend could not pass it, the rest stays pending (null: none)",
    )


class JobCreate(BaseModel):
    """A job to create: a task, and its items inline or as an uploaded file."""

    model_config = _STRICT

    task: str = Field(
        min_length=1,
        max_length=200,
        description="a task name from GET /v1/service; `http:<connection>` sends request lines",
    )
    items: list[Any] | None = Field(
        default=None, min_length=1, description="the items (any JSON), one task call each"
    )
    file_id: str | None = Field(
        default=None,
        pattern=r"^file-[0-9a-f]{32}$",
        description="an uploaded JSONL file (POST /v1/files): one item per line",
    )
    options: JobOptionsIn | None = Field(default=None, description="null or absent: the defaults")


class CountsOut(BaseModel):
    """Items per state."""

    total: int
    pending: int
    running: int
    succeeded: int
    failed: int
    cancelled: int


class SummaryOut(BaseModel):
    """The job's run in numbers (final once it is done)."""

    total: int
    succeeded: int
    failed: int
    cancelled: int
    duration_s: float
    throughput_per_s: float
    latency_mean_s: float
    latency_p50_s: float
    latency_p95_s: float
    latency_p99_s: float
    concurrency: int
    tokens_in: int | None = Field(
        default=None, description="LLM jobs: prompt tokens of the answers (their usage)"
    )
    tokens_out: int | None = Field(default=None, description="LLM jobs: completion tokens")
    cost_usd: float | None = Field(
        default=None, description="LLM jobs: the answers' cost at the price table's list prices"
    )
    unpriced_answers: int | None = Field(
        default=None, description="LLM jobs: answers whose model has no price (not in cost_usd)"
    )
    projected_cost_usd: float | None = Field(
        default=None,
        description="LLM jobs: the cost the whole job is heading for (cost so far / items"
        " settled * total items); null before any item settled",
    )


class OptionsOut(BaseModel):
    """The job's options."""

    concurrency: int
    attempts: int
    timeout_s: float | None
    limiters: list[str]
    max_cost_usd: float | None = None
    traceparent: str | None = Field(
        default=None,
        description="The W3C trace context the job was submitted in (the traceparent header"
        " of the submit), continued by the workers' spans; null without one",
    )


class LimitOut(BaseModel):
    """One rate limit the job's calls go through."""

    limiter: str
    unit: Literal["requests", "tokens"]
    per_second: float


class LinksOut(BaseModel):
    """Where to follow and act on the job."""

    self: str
    events: str
    results: str
    cancel: str
    retry: str
    stream_token: str


class StreamTokenOut(BaseModel):
    """A token that opens one job's event stream without an API key (for a browser)."""

    token: str
    expires_at: int = Field(description="Unix seconds; the stream must open before then")
    events: str = Field(description="the job's event stream, with the token: for EventSource")


class JobOut(BaseModel):
    """A job: status, progress, counts, summary."""

    id: str
    task: str
    status: JobStatus
    progress: float = Field(ge=0, le=100)
    step: str | None
    counts: CountsOut
    summary: SummaryOut
    options: OptionsOut
    limits: list[LimitOut]
    created_at: float
    started_at: float | None
    finished_at: float | None
    error: str | None
    idempotency_key: str | None
    version: int
    links: LinksOut


class JobPage(BaseModel):
    """A page of jobs, newest first."""

    data: list[JobOut]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null: last")


class ErrorOut(BaseModel):
    """Why an item failed."""

    type: str | None
    message: str | None


class ItemOut(BaseModel):
    """One item and how it ended."""

    index: int
    state: ItemState
    input: Any
    result: Any
    error: ErrorOut | None
    attempts: int
    latency_s: float | None


class ItemPage(BaseModel):
    """A page of items, in index order."""

    data: list[ItemOut]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null: last")


class BudgetIn(BaseModel):
    """A job's new spend budget."""

    model_config = _STRICT

    max_cost_usd: float | None = Field(
        gt=0,
        le=1_000_000,
        allow_inf_nan=False,
        description="the budget in US dollars (null: none); a job that reached its old budget"
        " starts its pending items again",
    )


class RetryOut(BaseModel):
    """What retry-failed did."""

    retried: int
    job: JobOut


class FileOut(BaseModel):
    """An uploaded JSONL file."""

    id: str
    bytes: int
    items: int
    created_at: float


class TaskOut(BaseModel):
    """A task jobs can run."""

    name: str
    limiters: list[str]
    base_url: str | None = Field(description="for http tasks: the only address they call")


class ServiceOut(BaseModel):
    """What this service offers."""

    version: str
    auth: Literal["api_key", "none"]
    tasks: list[TaskOut]
    limits: dict[str, int]


class PartHealthOut(BaseModel):
    """One part of the service, as `/healthz` sees it."""

    ok: bool
    error: str | None = Field(description="why not, one line (hidden without a key)")


class WorkerHealthOut(BaseModel):
    """The in-process worker, as `/healthz` sees it."""

    alive: bool = Field(description="false while a failed worker waits to be replaced")
    restarts: int = Field(description="failed workers replaced since the service started")
    error: str | None = Field(description="the last failure, one line (hidden without a key)")


class HealthOut(BaseModel):
    """Whether the service can do its work now."""

    status: Literal["ok", "degraded", "down"]
    store: PartHealthOut
    redis: PartHealthOut | None = Field(description="null unless limits are kept in Redis")
    worker: WorkerHealthOut | None = Field(description="null with no in-process worker")


class ProblemOut(BaseModel):
    """An error (RFC 9457), with a detail that says what to fix."""

    type: str
    title: str
    status: int
    detail: str


# -- OpenAI's Files and Batch API (``routes_files.py``, ``routes_batches.py``): OpenAI's shapes ---

BatchStatus = Literal[
    "validating",
    "failed",
    "in_progress",
    "finalizing",
    "completed",
    "expired",
    "cancelling",
    "cancelled",
]


class OpenAIErrorBody(BaseModel):
    """OpenAI's error: what went wrong, and the parameter it is about."""

    message: str
    type: str
    param: str | None
    code: str | None


class OpenAIErrorOut(BaseModel):
    """An error of the Files and Batch API, in OpenAI's shape."""

    error: OpenAIErrorBody


class OpenAIFileOut(BaseModel):
    """A file, as OpenAI's Files API shows it (a job input shows purpose ``user_data``).

    It never expires here: ``expires_at`` and ``status_details`` are absent.
    """

    id: str
    object: Literal["file"]
    bytes: int
    created_at: int
    filename: str
    purpose: str
    status: Literal["uploaded", "processed", "error"]


class OpenAIFileList(BaseModel):
    """A page of files (an empty page has ``""`` for `first_id` and `last_id`)."""

    object: Literal["list"]
    data: list[OpenAIFileOut]
    first_id: str
    last_id: str
    has_more: bool


class OpenAIFileDeleted(BaseModel):
    """A file deleted."""

    id: str
    object: Literal["file"]
    deleted: bool


class BatchCreate(BaseModel):
    """A batch to create (OpenAI's fields; others are ignored)."""

    input_file_id: str = Field(description="a file uploaded with purpose=batch")
    endpoint: Literal[
        "/v1/chat/completions", "/v1/embeddings", "/v1/completions", "/v1/responses", "/v1/messages"
    ]
    completion_window: Literal["24h"]
    metadata: (
        dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=512)]] | None
    ) = Field(
        default=None,
        max_length=16,
        description="up to 16 pairs; `conveyor_connection` chooses the upstream connection",
    )


class BatchErrorOut(BaseModel):
    """One error of a failed batch (a line of its input file, or the batch as a whole)."""

    code: str | None
    message: str | None
    param: str | None
    line: int | None


class BatchErrorsOut(BaseModel):
    """The errors of a failed batch."""

    object: Literal["list"]
    data: list[BatchErrorOut]


class RequestCountsOut(BaseModel):
    """The batch's requests: in all, completed, failed."""

    total: int
    completed: int
    failed: int


#: A field a batch shows once it has it: absent before, never ``null`` (OpenAI's document).
_Absent = SkipJsonSchema[None]


class BatchOut(BaseModel):
    """A batch, as OpenAI's Batch API shows it: what it does not have yet is absent."""

    id: str
    object: Literal["batch"]
    endpoint: str
    errors: BatchErrorsOut | _Absent = None
    input_file_id: str
    completion_window: str
    status: BatchStatus
    output_file_id: str | _Absent = None
    error_file_id: str | _Absent = None
    created_at: int
    in_progress_at: int | _Absent = None
    expires_at: int
    finalizing_at: int | _Absent = None
    completed_at: int | _Absent = None
    failed_at: int | _Absent = None
    expired_at: int | _Absent = None
    cancelling_at: int | _Absent = None
    cancelled_at: int | _Absent = None
    request_counts: RequestCountsOut
    metadata: dict[str, str] | None


class BatchList(BaseModel):
    """A page of batches, newest first (an empty page has ``""`` for its ids)."""

    object: Literal["list"]
    data: list[BatchOut]
    first_id: str
    last_id: str
    has_more: bool
