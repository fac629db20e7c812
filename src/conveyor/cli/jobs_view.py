"""Pure formatting for ``conveyor jobs``: jobs in, strings or rich renderables out. No printing."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Group
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from .run_view import format_duration

if TYPE_CHECKING:
    from ..jobs.model import Job

__all__ = ["counts_text", "job_line", "job_table", "jobs_table", "watch_view"]

_STYLE = {
    "queued": "cyan",
    "running": "blue",
    "cancelling": "yellow",
    "completed": "green",
    "failed": "red",
    "cancelled": "yellow",
}


def counts_text(job: Job) -> str:
    """The counts in one phrase.

    >>> from conveyor.jobs.model import Counts, Job, JobOptions
    >>> job = Job(id="j", task="t", options=JobOptions(), status="running",
    ...           counts=Counts(total=10, pending=5, running=2, succeeded=2, failed=1))
    >>> counts_text(job)
    '3/10 settled: 2 succeeded, 1 failed, 0 cancelled, 2 running, 5 pending'
    """
    c = job.counts
    return (
        f"{c.settled:,}/{c.total:,} settled: {c.succeeded:,} succeeded, {c.failed:,} failed,"
        f" {c.cancelled:,} cancelled, {c.running:,} running, {c.pending:,} pending"
    )


def _elapsed(job: Job, now_s: float) -> str:
    if job.started_at is None:
        return "not started"
    end = job.finished_at if job.finished_at is not None else now_s
    return format_duration(max(0.0, end - job.started_at))


def job_line(job: Job, now_s: float) -> str:
    """One plain line of a job's progress, for output that is not a terminal."""
    step = f" [{job.step}]" if job.step else ""
    return (
        f"{job.id} {job.status} {job.progress:.0f}%{step}: {counts_text(job)};"
        f" {_elapsed(job, now_s)}"
    )


def watch_view(job: Job, now_s: float) -> Group:
    """The live display: a bar with the percentage and status, then the step and counts."""
    grid = Table.grid(padding=(0, 1))
    bar = ProgressBar(total=100.0, completed=job.progress, width=40)
    status = Text(job.status, style=_STYLE.get(job.status, ""))
    grid.add_row(bar, Text(f"{job.progress:5.1f}%"), status, Text(_elapsed(job, now_s)))
    lines: list[Table | Text] = [grid]
    if job.step:
        lines.append(Text(job.step, style="bold"))
    lines.append(Text(counts_text(job)))
    if job.error:
        lines.append(Text(job.error, style="red"))
    return Group(*lines)


def jobs_table(jobs: list[Job], now_s: float) -> Table:
    """``conveyor jobs ls``: one row per job."""
    table = Table(title="jobs", title_justify="left")
    table.add_column("id", no_wrap=True, min_width=36)
    for name, justify in (
        ("task", "left"),
        ("status", "left"),
        ("progress", "right"),
        ("items", "right"),
        ("failed", "right"),
        ("elapsed", "right"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for job in jobs:
        table.add_row(
            job.id,
            job.task,
            Text(job.status, style=_STYLE.get(job.status, "")),
            f"{job.progress:.0f}%",
            f"{job.counts.total:,}",
            f"{job.counts.failed:,}",
            _elapsed(job, now_s),
        )
    return table


def job_table(job: Job, now_s: float) -> Table:
    """``conveyor jobs show``: every fact of one job."""
    table = Table(title=f"job {job.id}", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value")
    s = job.summary
    o = job.options
    rows = [
        ("task", job.task),
        ("status", job.status),
        ("progress", f"{job.progress:.1f}%"),
        ("step", job.step or ""),
        ("items", counts_text(job)),
        ("elapsed", _elapsed(job, now_s)),
        ("throughput", f"{s.throughput_per_s:,.1f} items/s" if s.duration_s else ""),
        ("latency mean", f"{s.latency_mean_s * 1000:,.1f} ms" if s.latency_mean_s else ""),
        (
            "options",
            f"concurrency {o.concurrency}, attempts {o.attempts}, timeout "
            + (f"{o.timeout_s:g}s" if o.timeout_s is not None else "none")
            + (f", limiters {', '.join(o.limiters)}" if o.limiters else "")
            + (f", max cost ${o.max_cost_usd:g}" if o.max_cost_usd is not None else ""),
        ),
        ("error", job.error or ""),
    ]
    for what, value in rows:
        if value:
            table.add_row(what, value)
    return table
