"""`ItemMetrics` counts in plain ints; a scrape reads exactly what Counter/Histogram wrote."""

import time

import prometheus_client.metrics
import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import choose_encoder

import conveyor
from conveyor.engine.events import ItemFinished, ItemRetrying, ItemStarted
from conveyor.engine.report import Outcome
from conveyor.jobs.model import Claim, ClaimedItem, Counts, Job, JobOptions
from conveyor.metrics.observer import DURATION_BUCKETS_S, QUEUE_WAIT_BUCKETS_S, ItemMetrics
from conveyor.metrics.observer import _reason as reason


class CounterHistogramMetrics:
    """The same metrics as prometheus_client's own Counter and Histogram count them."""

    def __init__(self, r: CollectorRegistry) -> None:
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
        self.seen: set[str] = set()

    def claimed(self, worker_id, claim):
        job = claim.job
        self.queue_wait.labels(job.task).observe(max(0.0, job.started_at - job.created_at))

    def event(self, job, event):
        task = job.task
        if task not in self.seen:  # every child of a task made on its first event, as before
            self.seen.add(task)
            for counter in (self.started, self.attempts, self.succeeded):
                counter.labels(task)
            self.duration.labels(task, "succeeded")
            self.duration.labels(task, "failed")
        if isinstance(event, ItemStarted):
            self.attempts.labels(task).inc()
            if event.attempt == 1:
                self.started.labels(task).inc()
        elif isinstance(event, ItemRetrying):
            self.retried.labels(task, reason(event.error)).inc()
        elif isinstance(event, ItemFinished) and event.outcome.state != "cancelled":
            out = event.outcome
            if out.state == "succeeded":
                self.succeeded.labels(task).inc()
            else:
                self.failed.labels(task, reason(out.error)).inc()
            self.duration.labels(task, out.state).observe(out.latency_s)


def _job(task: str, *, created_at: float = 0.0, started_at: float | None = None) -> Job:
    return Job(
        id=f"job-{task}",
        task=task,
        options=JobOptions(),
        status="running",
        counts=Counts(total=1, running=1),
        created_at=created_at,
        started_at=started_at,
    )


def _finished(state, latency_s: float, error: BaseException | None = None) -> ItemFinished:
    return ItemFinished(Outcome(0, 0, state, None, error, 1, latency_s, latency_s))


def _feed(observer) -> None:
    """Two tasks' attempts, a retry, successes, failures of two kinds, a cancel, a queue wait."""
    a, b = _job("a"), _job("b", created_at=100.0, started_at=142.5)
    observer.claimed("w1", Claim(b, [ClaimedItem(b.id, 0, "0", 0)]))
    events = [
        (a, ItemStarted(0, 0, 1)),
        (a, ItemRetrying(0, 0, 1, 1.0, conveyor.RetryAfter(1.0), "rate_limited")),
        (a, ItemStarted(0, 0, 2)),
        (b, ItemStarted(0, 0, 1)),
        (a, _finished("succeeded", 0.3)),
        (b, _finished("failed", 0.01, ValueError("bad"))),  # on a bound: counted in its bucket
        (a, ItemStarted(1, 1, 1)),
        (a, _finished("failed", 400.0, TimeoutError())),  # past the last bound: +Inf only
        (a, _finished("cancelled", 2.0)),
        (b, _finished("succeeded", 7.0)),
    ]
    for job, event in events:
        observer.event(job, event)


@pytest.mark.parametrize("created", [True, False], ids=["with_created", "without_created"])
def test_a_scrape_prints_what_counter_and_histogram_printed(monkeypatch, created):
    """Both exposition formats are byte for byte those of prometheus_client's own metrics."""
    monkeypatch.setattr(time, "time", lambda: 1_700_000_000.25)
    # What PROMETHEUS_DISABLE_CREATED_SERIES and disable_created_metrics() set.
    monkeypatch.setattr(prometheus_client.metrics, "_use_created", created)
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    _feed(ItemMetrics(ours))
    _feed(CounterHistogramMetrics(theirs))
    openmetrics, _ = choose_encoder("application/openmetrics-text; version=1.0.0")
    assert openmetrics(ours) == openmetrics(theirs)
    text = generate_latest(ours).decode()
    assert text == generate_latest(theirs).decode()
    assert ('conveyor_items_failed_created{reason="transient",task="a"}' in text) is created
    assert 'conveyor_items_retried_total{reason="rate_limited",task="a"} 1.0' in text
    assert 'conveyor_item_duration_seconds_bucket{le="+Inf",state="failed",task="a"} 1.0' in text
    assert 'conveyor_job_queue_wait_seconds_sum{task="b"} 42.5' in text


def test_a_registry_takes_one_item_metrics():
    """A second ItemMetrics on one registry is refused, as its Counters were (names clash)."""
    registry = CollectorRegistry()
    ItemMetrics(registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        ItemMetrics(registry)
