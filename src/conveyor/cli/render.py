"""Pure formatting for the terminal: values in, rich renderables or strings out. No printing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.table import Table

if TYPE_CHECKING:
    from ..engine.report import Summary

__all__ = ["Tally", "progress_line", "summary_table"]


@dataclass
class Tally:
    """Live counts the progress display reads (updated from engine events)."""

    total: int | None = None
    started: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    retrying: int = 0

    @property
    def done(self) -> int:
        """Items settled so far."""
        return self.succeeded + self.failed + self.cancelled


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms"


def progress_line(tally: Tally, elapsed_s: float) -> str:
    """One plain line of progress, for output that is not a terminal.

    >>> progress_line(Tally(total=10, succeeded=4, failed=1, retrying=2), 2.0)
    '5/10 settled (50%): 4 succeeded, 1 failed, 2 retrying; 2.5 items/s, 2.0 s'
    """
    done = tally.done
    of = f"/{tally.total}" if tally.total is not None else ""
    pct = f" ({done * 100 // tally.total}%)" if tally.total else ""
    rate = done / elapsed_s if elapsed_s > 0 else 0.0
    return (
        f"{done}{of} settled{pct}: {tally.succeeded} succeeded, {tally.failed} failed,"
        f" {tally.retrying} retrying; {rate:,.1f} items/s, {elapsed_s:.1f} s"
    )


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
