"""The metrics a worker counts as it works: items by outcome, retries, latencies, queue wait.

`ItemMetrics` is a `conveyor.jobs.observe.JobObserver`: the worker calls it on each claim
and each event of the engine, and it counts into plain integers and bucket lists (the values
of this process; Prometheus sums the processes), which a scrape reads as Prometheus counters
and histograms (a custom collector, like those of `conveyor.metrics.collectors`). The worker
calls `event` twice per item: a ``prometheus_client`` counter or histogram there took a lock
per call, an integer add does not. Labels are bounded: the task's name and, for failures and
retries, the kind of error (`conveyor.policy.classify`: rate_limited, overloaded, quota,
transient, permanent), never a job id, an item or a message.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from typing import TYPE_CHECKING, NamedTuple

from prometheus_client import metrics as _client_metrics
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from .. import _clock
from ..engine.events import ItemFinished, ItemRetrying, ItemStarted
from ..jobs.observe import JobObserver
from ..policy.classify import classify

if TYPE_CHECKING:
    from collections.abc import Sequence

    from prometheus_client import CollectorRegistry, Metric

    from ..engine.events import Event
    from ..jobs.model import Claim, Job

__all__ = ["DURATION_BUCKETS_S", "QUEUE_WAIT_BUCKETS_S", "ItemMetrics"]

#: Item latency buckets, seconds: from a fast API call to a long LLM answer.
DURATION_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
#: Queue wait buckets, seconds: from a worker waiting for work to a backlog of a day.
QUEUE_WAIT_BUCKETS_S = (0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 14_400, 86_400)


class _Figure(NamedTuple):
    """A family's name, help and label names."""

    name: str
    help_text: str
    labels: tuple[str, ...]

    def counter(self) -> CounterMetricFamily:
        """An empty counter family of this figure."""
        return CounterMetricFamily(self.name, self.help_text, labels=self.labels)

    def histogram(self) -> HistogramMetricFamily:
        """An empty histogram family of this figure."""
        return HistogramMetricFamily(self.name, self.help_text, labels=self.labels)


_TASK = ("task",)
_STARTED = _Figure(
    "conveyor_items_started_total",
    "Items whose first attempt of a worker's run started.",
    _TASK,
)
_ATTEMPTS = _Figure(
    "conveyor_item_attempts_total", "Attempts at items started, retries included.", _TASK
)
_RETRIED = _Figure(
    "conveyor_items_retried_total",
    "Failed attempts that will be retried, by the kind of error.",
    ("task", "reason"),
)
_SUCCEEDED = _Figure("conveyor_items_succeeded_total", "Items that succeeded.", _TASK)
_FAILED = _Figure(
    "conveyor_items_failed_total",
    "Items that failed for good, by the kind of their last error.",
    ("task", "reason"),
)
_DURATION = _Figure(
    "conveyor_item_duration_seconds",
    "The last attempt's duration of each item that succeeded or failed.",
    ("task", "state"),
)
_QUEUE_WAIT = _Figure(
    "conveyor_job_queue_wait_seconds",
    "From a job's submit to the first claim of its items by a worker.",
    _TASK,
)


class _Buckets:
    """A histogram's bounds, ``+Inf`` last, and their ``le`` labels."""

    def __init__(self, bounds_s: Sequence[float]) -> None:
        self.bounds = (*(float(b) for b in bounds_s), math.inf)
        # As prometheus_client writes them ("1.0", "+Inf"); its helper has no annotations.
        self.labels = tuple(floatToGoString(b) for b in self.bounds)  # type: ignore[no-untyped-call]


_DURATION_BUCKETS = _Buckets(DURATION_BUCKETS_S)
_QUEUE_WAIT_BUCKETS = _Buckets(QUEUE_WAIT_BUCKETS_S)


class _Histogram:
    """One label set's histogram: observations per bucket (not cumulative), sum, since when."""

    __slots__ = ("buckets", "counts", "created", "sum")

    def __init__(self, buckets: _Buckets, created: float) -> None:
        self.buckets = buckets
        self.counts = [0] * len(buckets.bounds)
        self.sum = 0.0
        self.created = created

    def observe(self, value: float) -> None:
        """Count `value` in the first bucket whose bound is at least it, as Prometheus does."""
        self.counts[bisect_left(self.buckets.bounds, value)] += 1
        self.sum += value

    def cumulative(self) -> list[tuple[str, float]]:
        """The ``le`` buckets as a scrape shows them: each counts those below it too."""
        total = 0
        found: list[tuple[str, float]] = []
        for label, count in zip(self.buckets.labels, self.counts, strict=True):
            total += count
            found.append((label, total))
        return found


class _Count:
    """One label set's counter: its value, and since when it counts (Unix time)."""

    __slots__ = ("created", "value")

    def __init__(self, created: float) -> None:
        self.value = 0
        self.created = created


class _Task:
    """One task's counts of every item, made on its first event (the hot path adds to them)."""

    __slots__ = ("attempts", "created", "failed_s", "started", "succeeded", "succeeded_s")

    def __init__(self, created: float) -> None:
        self.created = created
        self.started = 0
        self.attempts = 0
        self.succeeded = 0
        self.succeeded_s = _Histogram(_DURATION_BUCKETS, created)
        self.failed_s = _Histogram(_DURATION_BUCKETS, created)


def _reason(error: BaseException | None) -> str:
    """The kind of an error, a label of five values (``permanent`` for none)."""
    if error is None:
        return "permanent"
    return classify(error, now_wall_s=_clock.wall()).kind


def _shows_created() -> bool:
    """Whether a scrape shows each label set's ``_created`` sample (since when it counts).

    ``prometheus_client``'s own counters and histograms drop them under
    ``PROMETHEUS_DISABLE_CREATED_SERIES`` or ``disable_created_metrics()``, which set this
    module flag of its: the families here follow the same switch.
    """
    return bool(getattr(_client_metrics, "_use_created", True))


def _counter(
    figure: _Figure, counts: dict[tuple[str, str], _Count], created: bool
) -> CounterMetricFamily:
    """A counter family with a sample per label set of `counts`."""
    family = figure.counter()
    for labels, count in counts.items():
        family.add_metric(labels, count.value, count.created if created else None)
    return family


def _add_histogram(
    family: HistogramMetricFamily, labels: dict[str, str], hist: _Histogram, created: bool
) -> None:
    """Add one label set's samples to `family`, in the order ``prometheus_client`` writes them."""
    family.add_metric(list(labels.values()), hist.cumulative(), hist.sum)
    if created:
        family.samples.append(Sample(f"{family.name}_created", labels, hist.created))


class ItemMetrics(JobObserver):
    """Counts a worker's items, read by a scrape of `registry` (see the module docstring)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._tasks: dict[str, _Task] = {}
        self._retried: dict[tuple[str, str], _Count] = {}
        self._failed: dict[tuple[str, str], _Count] = {}
        self._queue_wait: dict[str, _Histogram] = {}
        registry.register(self)

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
            wait = self._queue_wait.get(job.task)
            if wait is None:
                wait = self._queue_wait[job.task] = _Histogram(_QUEUE_WAIT_BUCKETS, _clock.wall())
            wait.observe(max(0.0, job.started_at - job.created_at))

    def event(self, job: Job, event: Event) -> None:
        """Count an attempt started, a retry, or an item settled."""
        counts = self._tasks.get(job.task)
        if counts is None:
            counts = self._tasks[job.task] = _Task(_clock.wall())
        if isinstance(event, ItemStarted):
            counts.attempts += 1
            if event.attempt == 1:
                counts.started += 1
        elif isinstance(event, ItemRetrying):
            self._count(self._retried, job.task, _reason(event.error))
        elif isinstance(event, ItemFinished):
            outcome = event.outcome
            if outcome.state == "succeeded":
                counts.succeeded += 1
                counts.succeeded_s.observe(outcome.latency_s)
            elif outcome.state == "failed":
                self._count(self._failed, job.task, _reason(outcome.error))
                counts.failed_s.observe(outcome.latency_s)
            # cancelled: the job's, or given back to pending by a stopping worker: not counted

    @staticmethod
    def _count(counts: dict[tuple[str, str], _Count], task: str, reason: str) -> None:
        """Add one to a task's count for the kind of error `reason`."""
        count = counts.get((task, reason))
        if count is None:
            count = counts[task, reason] = _Count(_clock.wall())
        count.value += 1

    def describe(self) -> list[Metric]:
        """The families a scrape shows: the registry refuses a second collector of these names."""
        return self.collect()

    def collect(self) -> list[Metric]:
        """The counts as Prometheus counters and histograms, label sets in order of first use."""
        created = _shows_created()
        started = _STARTED.counter()
        attempts = _ATTEMPTS.counter()
        succeeded = _SUCCEEDED.counter()
        duration = _DURATION.histogram()
        for task, counts in self._tasks.items():
            since = counts.created if created else None
            started.add_metric([task], counts.started, since)
            attempts.add_metric([task], counts.attempts, since)
            succeeded.add_metric([task], counts.succeeded, since)
            _add_histogram(
                duration, {"task": task, "state": "succeeded"}, counts.succeeded_s, created
            )
            _add_histogram(duration, {"task": task, "state": "failed"}, counts.failed_s, created)
        queue_wait = _QUEUE_WAIT.histogram()
        for task, wait in self._queue_wait.items():
            _add_histogram(queue_wait, {"task": task}, wait, created)
        retried = _counter(_RETRIED, self._retried, created)
        failed = _counter(_FAILED, self._failed, created)
        return [started, attempts, retried, succeeded, failed, duration, queue_wait]
