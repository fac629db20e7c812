"""What a scrape reads as it is: the limiters' state, the LLM tasks' tokens and cost, the store.

Nothing here is counted twice: the limiters count their admissions and push-backs, the http
tasks their tokens and cost (`conveyor.http.tally.BatchTally`), and these collectors only read
them when Prometheus scrapes (custom collectors, `prometheus_client`'s way to export values
kept elsewhere). Every family is yielded on every scrape, with or without samples, so the
names a dashboard or an alert uses never come and go.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from .. import _clock
from ..http.tally import BatchTally

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from prometheus_client import Metric

    from ..jobs.app import App
    from ..jobs.overview import StoreOverview

__all__ = ["LimiterCollector", "LlmCollector", "store_families"]

#: The kinds of push-back a limiter counts (`conveyor.policy.classify`).
PUSHBACK_KINDS = ("rate_limited", "overloaded")

#: A family with one sample per limiter (or task), read from one of its attributes: the
#: family's kind, name and help, then the attribute.
_Figure = tuple[type[CounterMetricFamily | GaugeMetricFamily], str, str, str]

_LIMITER_FIGURES: tuple[_Figure, ...] = (
    (
        CounterMetricFamily,
        "conveyor_limiter_admitted",
        "Calls this process's limiter admitted.",
        "admitted",
    ),
    (
        GaugeMetricFamily,
        "conveyor_limiter_in_flight",
        "Calls admitted by this process and not yet finished.",
        "in_flight",
    ),
    (
        GaugeMetricFamily,
        "conveyor_limiter_waiting",
        "Callers of this process waiting to be admitted.",
        "waiting",
    ),
)

_TALLY_FIGURES: tuple[_Figure, ...] = (
    (
        CounterMetricFamily,
        "conveyor_llm_cost_usd",
        "What the answers cost in US dollars, at the price table's prices.",
        "cost_usd",
    ),
    (
        CounterMetricFamily,
        "conveyor_llm_unpriced_answers",
        "Answers whose model has no price (not in conveyor_llm_cost_usd_total).",
        "unpriced",
    ),
    (CounterMetricFamily, "conveyor_http_requests", "HTTP requests the task sent.", "sent"),
    (
        CounterMetricFamily,
        "conveyor_http_rate_limited",
        "HTTP 429 answers the task received.",
        "rate_limited",
    ),
    (
        CounterMetricFamily,
        "conveyor_http_cache_hits",
        "Requests answered from the response cache (not sent).",
        "cache_hits",
    ),
)


def _figure_families(
    figures: tuple[_Figure, ...], label: str, sources: Sequence[tuple[str, object]]
) -> list[Metric]:
    """A family per figure, with a sample per source (its name, then the object read)."""
    families: list[Metric] = []
    for kind, name, help_text, attribute in figures:
        family = kind(name, help_text, labels=[label])
        for source_name, source in sources:
            family.add_metric([source_name], getattr(source, attribute))
        families.append(family)
    return families


class _AppCollector:
    """A collector of what the parts of one `App` count."""

    def __init__(self, app: App) -> None:
        self._app = app


class LimiterCollector(_AppCollector):
    """The app's shared limiters, as this process sees them (Redis ones: their local part)."""

    def collect(self) -> Iterator[Metric]:
        """One family per figure, one sample per limiter (and dimension)."""
        limiters = self._app.limiters
        yield from _figure_families(
            _LIMITER_FIGURES, "limiter", [(lim.name, lim) for lim in limiters]
        )
        concurrency = GaugeMetricFamily(
            "conveyor_limiter_concurrency_limit",
            "Calls allowed in flight at once now (fixed, or found by concurrency='auto').",
            labels=["limiter"],
        )
        utilisation = GaugeMetricFamily(
            "conveyor_limiter_utilisation_ratio",
            "How much of a dimension's budget is in use: 0 idle, 1 at the limit (above 1,"
            " callers wait). Not shown for limits held in Redis.",
            labels=["limiter", "dimension"],
        )
        limit = GaugeMetricFamily(
            "conveyor_limiter_limit",
            "The limit enforced now per period (lower than configured once the API stated a"
            " stricter one).",
            labels=["limiter", "dimension", "period_seconds"],
        )
        pushbacks = CounterMetricFamily(
            "conveyor_limiter_pushbacks",
            "Rate limits (429) and overloads (503, 529) the API answered, by kind.",
            labels=["limiter", "kind"],
        )
        remaining = GaugeMetricFamily(
            "conveyor_limiter_api_remaining",
            "What the API's rate-limit headers last said is left, per dimension.",
            labels=["limiter", "dimension"],
        )
        halted = GaugeMetricFamily(
            "conveyor_limiter_halted",
            "1 once the API said the quota or spend cap is exhausted: nothing is admitted.",
            labels=["limiter"],
        )
        paused = GaugeMetricFamily(
            "conveyor_limiter_paused",
            "1 while the API's Retry-After holds every caller.",
            labels=["limiter"],
        )
        now = _clock.now()
        for lim in limiters:
            name = lim.name
            if lim.concurrency_limit is not None:
                concurrency.add_metric([name], lim.concurrency_limit)
            for dim, used in sorted(lim.utilisation().items()):
                utilisation.add_metric([name, dim], used)
            for rate in lim.rates:
                limit.add_metric([name, rate.unit, f"{rate.period_s:g}"], rate.limit)
            kinds = lim.learning.pushbacks_by_kind
            for kind in PUSHBACK_KINDS:
                pushbacks.add_metric([name, kind], kinds.get(kind, 0))
            for dim, left in sorted(lim.learning.stated_remaining.items()):
                remaining.add_metric([name, dim], left)
            halted.add_metric([name], 1.0 if lim.halted is not None else 0.0)
            paused.add_metric([name], 1.0 if lim.paused_until > now else 0.0)
        yield from (concurrency, utilisation, limit, pushbacks, remaining, halted, paused)


class LlmCollector(_AppCollector):
    """The tokens, cost and HTTP answers of the app's http tasks (LLM calls), in this process."""

    def collect(self) -> Iterator[Metric]:
        """One family per figure, one sample per http task."""
        tallies = self._tallies()
        tokens = CounterMetricFamily(
            "conveyor_llm_tokens",
            "Tokens the answers' usage reported, by type (input, output).",
            labels=["task", "type"],
        )
        for name, tally in tallies:
            tokens.add_metric([name, "input"], tally.tokens_in)
            tokens.add_metric([name, "output"], tally.tokens_out)
        yield tokens
        yield from _figure_families(_TALLY_FIGURES, "task", tallies)

    def _tallies(self) -> list[tuple[str, BatchTally]]:
        """The app's http tasks (those with a tally), by name."""
        found: list[tuple[str, BatchTally]] = []
        for name in self._app.task_names:
            task = self._app.get_task(name)
            tally = getattr(task.fn, "tally", None) if task is not None else None
            if isinstance(tally, BatchTally):
                found.append((name, tally))
        return found


def store_families(overview: StoreOverview | None, read_s: float) -> list[Metric]:
    """The store's gauges from one read (`overview`; None: the store could not be read)."""
    up = GaugeMetricFamily(
        "conveyor_store_up", "1 when the job store answered this scrape's read, else 0."
    )
    read = GaugeMetricFamily(
        "conveyor_store_read_seconds", "How long this scrape's read of the job store took."
    )
    jobs = GaugeMetricFamily(
        "conveyor_jobs",
        "Jobs in the store by status (only the unfinished ones from a store read through"
        " its interface).",
        labels=["status"],
    )
    depth = GaugeMetricFamily(
        "conveyor_queue_depth", "Items waiting for a worker, in queued and running jobs."
    )
    running = GaugeMetricFamily("conveyor_items_running", "Items claimed by a worker now.")
    oldest = GaugeMetricFamily(
        "conveyor_oldest_queued_job_age_seconds",
        "How long the oldest queued job has waited (0 with none queued).",
    )
    capped = GaugeMetricFamily(
        "conveyor_store_overview_capped",
        "1 when a status had more jobs than a scrape reads (its figures are then floors).",
    )
    up.add_metric([], 0.0 if overview is None else 1.0)
    read.add_metric([], read_s)
    if overview is not None:
        for status, count in sorted(overview.jobs.items()):
            jobs.add_metric([status], count)
        depth.add_metric([], overview.pending)
        running.add_metric([], overview.running)
        since = overview.oldest_queued_at
        oldest.add_metric([], 0.0 if since is None else max(0.0, _clock.wall() - since))
        capped.add_metric([], 1.0 if overview.capped else 0.0)
    return [up, read, jobs, depth, running, oldest, capped]
