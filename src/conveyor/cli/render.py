"""Pure formatting for the terminal: values in, rich renderables or strings out. No printing."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table

if TYPE_CHECKING:
    from ..engine.report import Summary

__all__ = ["summary_table"]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms"


def summary_table(summary: Summary, *, title: str = "Summary") -> Table:
    """Return the run's summary as a two-column table."""
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value", justify="right")
    rows = [
        ("items", f"{summary.total:,}"),
        ("succeeded", f"{summary.succeeded:,}"),
        ("failed", f"{summary.failed:,}"),
        ("cancelled", f"{summary.cancelled:,}"),
        ("retries", f"{summary.retries:,}"),
        ("duration", f"{summary.duration_s:,.2f} s"),
        ("throughput", f"{summary.throughput_per_s:,.1f} items/s"),
        ("latency mean", _ms(summary.latency_mean_s)),
        (
            "latency p50 / p95 / p99",
            " / ".join(
                _ms(v)
                for v in (summary.latency_p50_s, summary.latency_p95_s, summary.latency_p99_s)
            ),
        ),
        ("latency max", _ms(summary.latency_max_s)),
        ("concurrency used / allowed", f"{summary.max_concurrency} / {summary.concurrency}"),
    ]
    for what, value in rows:
        table.add_row(what, value)
    return table
