"""What a job is: its options, status, counts and items. Plain values, no I/O.

A job runs one task over many items::

    queued ──> running ──> completed     every item settled, at least one succeeded
                   │  └──> failed        no item succeeded and one failed, or the job itself
                   │                     could not run (unknown task, ...): see `settle`
                   └─────> cancelling ──> cancelled

An item is ``pending`` (waiting for a worker), ``running`` (claimed by a worker under a
lease), or settled for good: ``succeeded``, ``failed`` or ``cancelled``. Retry-failed puts
failed items back to ``pending`` and the job (completed, or failed by its items) back to
``queued``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from .. import _clock
from ..errors import ConfigError
from . import latency
from .errors import JobStateError, TooManyActiveJobs
from .settle import failed_by_items

__all__ = [
    "ACTIVE",
    "TERMINAL",
    "UNFINISHED",
    "Claim",
    "ClaimedItem",
    "Counts",
    "ItemResult",
    "ItemState",
    "Job",
    "JobItem",
    "JobOptions",
    "JobStatus",
    "JobSummary",
    "NewJob",
    "admit",
    "budget_options",
    "reopens",
    "step_text",
]

JobStatus = Literal["queued", "running", "cancelling", "completed", "failed", "cancelled"]
ItemState = Literal["pending", "running", "succeeded", "failed", "cancelled"]
SettledState = Literal["succeeded", "failed", "cancelled"]

#: The statuses a job never leaves on its own (retry-failed may reopen a completed or failed one).
TERMINAL: frozenset[str] = frozenset({"completed", "failed", "cancelled"})
#: The statuses in which workers claim the job's pending items.
ACTIVE: frozenset[str] = frozenset({"queued", "running"})
#: The statuses that count against a tenant's limit of active jobs (`admit`): not yet done.
#: The stores' SQL spells the same list out (``status IN ('queued', 'running', 'cancelling')``).
UNFINISHED: frozenset[str] = frozenset({"queued", "running", "cancelling"})
ITEM_STATES: tuple[ItemState, ...] = ("pending", "running", "succeeded", "failed", "cancelled")
#: A W3C ``traceparent`` (version 00): version, trace id, parent span id, flags.
TRACEPARENT = re.compile(r"^00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$")


def _whole(name: str, value: object, least: int, hint: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        msg = f"{name}={value!r}: {name} must be a whole number >= {least}; {hint}"
        raise ConfigError(msg)


@dataclass(frozen=True, kw_only=True, slots=True)
class JobOptions:
    """How a job's items are run. Validated here: a wrong value raises `ConfigError`.

    Args:
        concurrency: items in flight at most, per worker.
        attempts: attempts per item on one worker (1: no retries); transient errors only
            (see `conveyor.is_transient`).
        timeout_s: one attempt's limit in seconds (``None``: none).
        limiters: names of the app's shared `Limiter`s each attempt goes through, in order.
        max_cost_usd: the job's spend budget in US dollars, for the http tasks (LLM jobs):
            an item starts only if the spend so far, plus the most the items in flight and
            it may cost (prompt plus ``max_tokens``, at the price table's prices), stays
            within it; the items left stay pending (``None``: no budget).
        traceparent: the W3C trace context the job was submitted in, so that the workers'
            spans continue that trace (set by `Jobs.submit` and the service; ``None``: none).
    """

    concurrency: int = 10
    attempts: int = 1
    timeout_s: float | None = None
    limiters: tuple[str, ...] = ()
    max_cost_usd: float | None = None
    traceparent: str | None = None

    def __post_init__(self) -> None:
        _whole("concurrency", self.concurrency, 1, "e.g. concurrency=10")
        _whole("attempts", self.attempts, 1, "attempts=1 means no retries")
        t = self.timeout_s
        if t is not None and (
            isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t) or t <= 0
        ):
            msg = f"timeout_s={t!r}: pass a number of seconds > 0, or None for no timeout"
            raise ConfigError(msg)
        c = self.max_cost_usd
        if c is not None and (
            isinstance(c, bool) or not isinstance(c, int | float) or not math.isfinite(c) or c <= 0
        ):
            msg = f"max_cost_usd={c!r}: pass a number of US dollars > 0, or None for no budget"
            raise ConfigError(msg)
        if isinstance(self.limiters, str) or not all(
            isinstance(n, str) and n for n in self.limiters
        ):
            msg = (
                f"limiters={self.limiters!r}: pass a tuple of limiter names registered on the"
                ' app, e.g. limiters=("openai",)'
            )
            raise ConfigError(msg)
        tp = self.traceparent
        if tp is not None and not (isinstance(tp, str) and TRACEPARENT.match(tp)):
            msg = (
                f"traceparent={tp!r}: pass a W3C traceparent (00-<32 hex>-<16 hex>-<2 hex>),"
                " or None"
            )
            raise ConfigError(msg)

    def to_json(self) -> str:
        """The options as stored (without a trace context, the same text as before it was)."""
        data = asdict(self)
        if self.traceparent is None:
            del data["traceparent"]
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> JobOptions:
        """Read options stored by `to_json` (unknown keys from newer versions are ignored)."""
        data = json.loads(text)
        tp = data.get("traceparent")
        if not (isinstance(tp, str) and TRACEPARENT.match(tp)):
            tp = None  # a trace context is only a hint: one that does not read as one goes
        return cls(
            concurrency=data.get("concurrency", 10),
            attempts=data.get("attempts", 1),
            timeout_s=data.get("timeout_s"),
            limiters=tuple(data.get("limiters", ())),
            max_cost_usd=data.get("max_cost_usd"),
            traceparent=tp,
        )


def admit(tenant: str, active: int, max_active_jobs: int | None) -> None:
    """Refuse a new job of `tenant`, which has `active` unfinished jobs, past the limit.

    The stores call it inside the transaction that would create the job, after an
    idempotency key's replay (which creates nothing) was answered. Raises `TooManyActiveJobs`
    when `active` is already `max_active_jobs` or more (``None``: no limit).
    """
    if max_active_jobs is not None and active >= max_active_jobs:
        raise TooManyActiveJobs(tenant, active, max_active_jobs)


def reopens(job: Job) -> bool:
    """Whether retrying `job`'s failed items makes it active again (then `admit` applies).

    A completed job with failed items, or one failed by its items (`settle.failed_by_items`),
    goes back to queued; a queued or running one is active already, and a job with no failed
    item does not change.
    """
    ended = job.status == "completed" or failed_by_items(job)
    return ended and job.counts.failed > 0


def budget_options(job: Job, max_cost_usd: float | None) -> JobOptions:
    """The options of `job` with the spend budget `max_cost_usd` (None: none); stores use it.

    Raises `ConfigError` for a budget that is not a number > 0, and `JobStateError` for a job
    cancelled, being cancelled or that could not run (its items will not run again).
    """
    options = replace(job.options, max_cost_usd=max_cost_usd)
    if job.status in {"cancelled", "cancelling"} or (
        job.status == "failed" and not failed_by_items(job)
    ):
        msg = (
            f"job {job.id} is {job.status}: only a queued, running, completed or failed (by its"
            " items) job can have its budget changed"
        )
        raise JobStateError(msg)
    return options


@dataclass(frozen=True, slots=True)
class Counts:
    """How many of a job's items are in each state."""

    total: int = 0
    pending: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0

    @property
    def settled(self) -> int:
        """Items in a terminal state."""
        return self.succeeded + self.failed + self.cancelled


@dataclass(frozen=True, kw_only=True, slots=True)
class JobSummary:
    """A job's run in numbers, from its counts and timestamps (all workers together)."""

    total: int
    succeeded: int
    failed: int
    cancelled: int
    duration_s: float
    throughput_per_s: float
    latency_mean_s: float
    #: Latency percentiles of the settled items' last attempts, within 10% (see `latency`).
    latency_p50_s: float = 0.0
    latency_p95_s: float = 0.0
    latency_p99_s: float = 0.0
    #: Items in flight at most, per worker (the job's ``concurrency`` option).
    concurrency: int = 0

    def to_dict(self) -> dict[str, int | float]:
        """The summary as a plain dict."""
        return asdict(self)


@dataclass(frozen=True, kw_only=True, slots=True)
class Job:
    """A snapshot of one job, as read from the store.

    Attributes:
        id: a UUIDv7: sorts by creation time.
        task: the name of the task run per item.
        status: see the module docstring.
        counts: items per state.
        step: the latest step message a task reported (``ctx.progress(50, "Matching...")``).
        created_at, started_at, finished_at: Unix times in seconds (``None``: not yet).
        error: why the job failed (status ``failed``), else ``None``.
        tenant: whose job it is (the service scopes every call to the caller's tenant).
        idempotency_key: the key it was submitted with, if any (unique per tenant).
        version: grows with every change the store makes to the job: a change feed's cursor.
    """

    id: str
    task: str
    options: JobOptions
    status: JobStatus
    counts: Counts
    step: str | None = None
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    #: Fractions of in-flight items done, in items (from ``ctx.progress``), as last published.
    inflight: float = 0.0
    #: Sum of the settled items' last-attempt latencies, for the mean.
    latency_total_s: float = 0.0
    #: The settled items' last-attempt latencies, bucketed (see `conveyor.jobs.latency`).
    latency_hist: latency.Histogram = ()
    tenant: str = "default"
    idempotency_key: str | None = None
    version: int = 0
    #: A hash of the request that created the job, if the submitter gave one (the service:
    #: of the body), so that an idempotency key reused with another request is told apart.
    request_hash: str | None = None

    @property
    def done(self) -> bool:
        """Whether the job reached a terminal status."""
        return self.status in TERMINAL

    @property
    def progress(self) -> float:
        """0-100: settled items, plus the reported progress of in-flight ones."""
        c = self.counts
        if self.status in TERMINAL or c.total == 0:
            return 100.0 if self.status in TERMINAL else 0.0
        return min(100.0, 100.0 * (c.settled + max(0.0, self.inflight)) / c.total)

    @property
    def summary(self) -> JobSummary:
        """The numbers so far (final once the job is done): `summary_at` the current time."""
        return self.summary_at(_clock.wall())

    def summary_at(self, now_s: float) -> JobSummary:
        """The numbers at Unix time `now_s`.

        The duration runs from the start to the end, or to `now_s` while the job is not done
        (a retry moves the start forward by the idle time, so it is not counted). The
        throughput counts the items that ran (succeeded or failed), not those cancelled
        before they started: a job that failed at once shows 0 items/s.
        """
        c = self.counts
        end = self.finished_at if self.finished_at is not None or self.done else now_s
        duration = 0.0
        if self.started_at is not None and end is not None:
            duration = max(0.0, end - self.started_at)
        done = c.succeeded + c.failed
        return JobSummary(
            total=c.total,
            succeeded=c.succeeded,
            failed=c.failed,
            cancelled=c.cancelled,
            duration_s=duration,
            throughput_per_s=done / duration if duration > 0 else 0.0,
            latency_mean_s=self.latency_total_s / done if done else 0.0,
            latency_p50_s=latency.percentile(self.latency_hist, 0.50),
            latency_p95_s=latency.percentile(self.latency_hist, 0.95),
            latency_p99_s=latency.percentile(self.latency_hist, 0.99),
            concurrency=self.options.concurrency,
        )

    def to_dict(self) -> dict[str, Any]:
        """The job as JSON-serialisable data (what ``conveyor jobs show --json`` prints)."""
        return {
            "id": self.id,
            "task": self.task,
            "status": self.status,
            "progress": round(self.progress, 2),
            "step": self.step,
            "counts": asdict(self.counts),
            "options": asdict(self.options),
            "summary": self.summary.to_dict(),
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "error": self.error,
        }


@dataclass(frozen=True, kw_only=True, slots=True)
class JobItem:
    """One item of a job and how it ended (or where it is).

    `result` is what the task returned (JSON), set only when `state` is ``succeeded``;
    `error_type` / `error_message` say why it failed. `attempts` counts attempts started
    across every worker that ran it.
    """

    job_id: str
    index: int
    input: Any
    state: ItemState
    attempts: int = 0
    result: Any = None
    error_type: str | None = None
    error_message: str | None = None
    latency_s: float | None = None
    started_at: float | None = None
    finished_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The item as JSON-serialisable data (one line of ``conveyor jobs results``)."""
        error = None
        if self.error_type is not None or self.error_message is not None:
            error = {"type": self.error_type, "message": self.error_message}
        return {
            "index": self.index,
            "state": self.state,
            "input": self.input,
            "result": self.result,
            "error": error,
            "attempts": self.attempts,
            "latency_s": self.latency_s,
        }


# ---- What crosses the store interface ------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class NewJob:
    """A job to create: items come separately, as JSON text.

    With an `idempotency_key`, creating is done once per (tenant, key): a second create with
    the same pair returns the first job, unchanged, and reads none of its items.
    """

    id: str
    task: str
    options: JobOptions
    created_at: float
    tenant: str = "default"
    idempotency_key: str | None = None
    #: A hash of the request (kept with the job; see `Job.request_hash`).
    request_hash: str | None = None


@dataclass(frozen=True, slots=True)
class ClaimedItem:
    """An item claimed by a worker: its input as stored (JSON text), and attempts so far."""

    job_id: str
    index: int
    input_json: str
    attempts: int


@dataclass(frozen=True, slots=True)
class Claim:
    """Items of one job, now ``running`` under the worker's lease."""

    job: Job
    items: list[ClaimedItem] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ItemResult:
    """How a claimed item ended, to record. `result_json` is set only when it succeeded.

    `finished_at`: when it ended by the worker's clock (Unix seconds), not when it is written:
    the job's rate series counts it in that second (`conveyor.jobs.series`).
    """

    job_id: str
    index: int
    state: SettledState
    attempts: int
    latency_s: float | None
    result_json: str | None = None
    error_type: str | None = None
    error_message: str | None = None
    finished_at: float | None = None


def step_text(job: Job) -> str | None:
    """The job's step; for a queued job with none, what it waits for (a worker with its task).

    A worker claims only the jobs whose task it has: until one with this task starts, the
    job stays queued, and this says why rather than nothing.

    >>> from conveyor.jobs.model import Counts, Job, JobOptions
    >>> step_text(Job(id="j", task="extarct", options=JobOptions(), status="queued",
    ...               counts=Counts(total=1, pending=1)))
    "waiting for a worker with task 'extarct'"
    """
    if job.step:
        return job.step
    if job.status == "queued":
        return f"waiting for a worker with task {job.task!r}"
    return None
