"""The metrics a worker counts as it works: items by outcome, retries, latencies, queue wait.

`ItemMetrics` is a `conveyor.jobs.observe.JobObserver`: the worker calls it on each claim
and each event of the engine, and it counts into a registry's counters and histograms (the
values of this process; Prometheus sums the processes). Labels are bounded: the task's name
and, for failures and retries, the kind of error (`conveyor.policy.classify`: rate_limited,
overloaded, quota, transient, permanent), never a job id, an item or a message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import Counter, Histogram

from .. import _clock
from ..engine.events import ItemFinished, ItemRetrying, ItemStarted
from ..jobs.observe import JobObserver
from ..policy.classify import classify

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from ..engine.events import Event
    from ..jobs.model import Claim, Job

__all__ = ["DURATION_BUCKETS_S", "QUEUE_WAIT_BUCKETS_S", "ItemMetrics"]

#: Item latency buckets, seconds: from a fast API call to a long LLM answer.
DURATION_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
#: Queue wait buckets, seconds: from a worker waiting for work to a backlog of a day.
QUEUE_WAIT_BUCKETS_S = (0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 14_400, 86_400)


class _Task:
    """One task's children of the counters of every item, looked up once (the hot path)."""

    __slots__ = ("attempts", "failed_s", "started", "succeeded", "succeeded_s")

    def __init__(self, m: ItemMetrics, task: str) -> None:
        self.started = m.started.labels(task)
        self.attempts = m.attempts.labels(task)
        self.succeeded = m.succeeded.labels(task)
        self.succeeded_s = m.duration.labels(task, "succeeded")
        self.failed_s = m.duration.labels(task, "failed")


def _reason(error: BaseException | None) -> str:
    """The kind of an error, a label of five values (``permanent`` for none)."""
    if error is None:
        return "permanent"
    return classify(error, now_wall_s=_clock.wall()).kind


class ItemMetrics(JobObserver):
    """Counts a worker's items into `registry` (see the module docstring)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.started = Counter(
            "conveyor_items_started_total",
            "Items whose first attempt of a worker's run started.",
            ["task"],
            registry=r,
        )
        self.attempts = Counter(
            "conveyor_item_attempts_total",
            "Attempts at items started, retries included.",
            ["task"],
            registry=r,
        )
        self.retried = Counter(
            "conveyor_items_retried_total",
            "Failed attempts that will be retried, by the kind of error.",
            ["task", "reason"],
            registry=r,
        )
        self.succeeded = Counter(
            "conveyor_items_succeeded_total", "Items that succeeded.", ["task"], registry=r
        )
        self.failed = Counter(
            "conveyor_items_failed_total",
            "Items that failed for good, by the kind of their last error.",
            ["task", "reason"],
            registry=r,
        )
        self.duration = Histogram(
            "conveyor_item_duration_seconds",
            "The last attempt's duration of each item that succeeded or failed.",
            ["task", "state"],
            buckets=DURATION_BUCKETS_S,
            registry=r,
        )
        self.queue_wait = Histogram(
            "conveyor_job_queue_wait_seconds",
            "From a job's submit to the first claim of its items by a worker.",
            ["task"],
            buckets=QUEUE_WAIT_BUCKETS_S,
            registry=r,
        )
        self._tasks: dict[str, _Task] = {}

    def claimed(self, worker_id: str, claim: Claim) -> None:
        """The first claim of a job (nothing of it ran before) observes its queue wait."""
        del worker_id
        job = claim.job
        first = (
            job.started_at is not None
            and job.counts.settled == 0
            and job.counts.running == len(claim.items)
            and all(item.attempts == 0 for item in claim.items)
        )
        if first:
            assert job.started_at is not None
            self.queue_wait.labels(job.task).observe(max(0.0, job.started_at - job.created_at))

    def event(self, job: Job, event: Event) -> None:
        """Count an attempt started, a retry, or an item settled."""
        counts = self._tasks.get(job.task)
        if counts is None:
            counts = self._tasks[job.task] = _Task(self, job.task)
        if isinstance(event, ItemStarted):
            counts.attempts.inc()
            if event.attempt == 1:
                counts.started.inc()
        elif isinstance(event, ItemRetrying):
            self.retried.labels(job.task, _reason(event.error)).inc()
        elif isinstance(event, ItemFinished):
            outcome = event.outcome
            if outcome.state == "succeeded":
                counts.succeeded.inc()
                counts.succeeded_s.observe(outcome.latency_s)
            elif outcome.state == "failed":
                self.failed.labels(job.task, _reason(outcome.error)).inc()
                counts.failed_s.observe(outcome.latency_s)
            # cancelled: the job's, or given back to pending by a stopping worker: not counted
