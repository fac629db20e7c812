"""Pure formatting for ``conveyor jobs``: jobs in, strings or rich renderables out. No printing."""

from __future__ import annotations

import difflib
import math
from typing import TYPE_CHECKING

from rich.console import Group
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from ..jobs.model import step_text
from .run_view import format_duration

if TYPE_CHECKING:
    from ..jobs.model import Job

__all__ = [
    "counts_text",
    "job_line",
    "job_table",
    "jobs_table",
    "unchecked_task_note",
    "watch_view",
]

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


def unchecked_task_note(task: str, ran: set[str]) -> str:
    """What ``jobs submit`` without ``--app`` says of a task no recent job of the store ran.

    >>> unchecked_task_note("extarct", {"extract", "analyze"})  # doctest: +NORMALIZE_WHITESPACE
    "task 'extarct' was not checked (no --app) and no recent job here ran it (these did:
    analyze, extract; did you mean 'extract'?): the job waits, queued, until a worker with task
    'extarct' starts; check the name, or pass --app MODULE:NAME to check it"
    """
    if ran:
        close = difflib.get_close_matches(task, sorted(ran), n=1)
        guess = f"; did you mean {close[0]!r}?" if close else ""
        seen = f" and no recent job here ran it (these did: {', '.join(sorted(ran))}{guess})"
    else:
        seen = " and no job here has run yet"
    return (
        f"task {task!r} was not checked (no --app){seen}: the job waits, queued, until a"
        f" worker with task {task!r} starts; check the name, or pass --app MODULE:NAME to"
        " check it"
    )


def _elapsed(job: Job, now_s: float) -> str:
    if job.started_at is None:
        return "not started"
    end = job.finished_at if job.finished_at is not None else now_s
    return format_duration(max(0.0, end - job.started_at))


def job_line(job: Job, now_s: float) -> str:
    """One plain line of a job's progress, for output that is not a terminal."""
    step = step_text(job)
    step = f" [{step}]" if step else ""
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
    step = step_text(job)
    if step:
        lines.append(Text(step, style="bold"))
    lines.append(Text(counts_text(job)))
    if job.error:
        lines.append(Text(job.error, style="red"))
    return Group(*lines)


#: The narrowest the task column of ``jobs ls`` gets before the time column gives way.
_TASK_MIN = 16


def _ls_status(job: Job) -> str:
    """The status, with the percentage (rounded down: 100% is done) while the job runs."""
    if job.status == "running":
        return f"running {math.floor(job.progress)}%"
    return job.status


def jobs_table(jobs: list[Job], now_s: float, *, width: int = 80) -> Text:
    """``conveyor jobs ls``: one line per job, no line wider than `width`.

    Columns: the full id (what the other actions take), status (with the percentage while
    running), items, failed, time, task. When they do not fit, the time column goes first,
    then the task's name is cut (with ``…``): ``show`` has every fact.
    """
    rows = [
        (
            job.id,
            _ls_status(job),
            f"{job.counts.total:,}",
            f"{job.counts.failed:,}",
            _elapsed(job, now_s) if job.started_at is not None else "-",
            job.task,
        )
        for job in jobs
    ]
    header = ("id", "status", "items", "failed", "time", "task")
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    right = (False, False, True, True, True, False)
    shown = [0, 1, 2, 3, 4, 5]
    gap = "  "

    def fixed() -> int:  # every shown column but the task, with the gaps
        return sum(widths[i] + len(gap) for i in shown if i != 5)

    if width - fixed() < min(widths[5], _TASK_MIN):
        shown.remove(4)
    widths[5] = max(min(widths[5], width - fixed()), 1)

    def cell(i: int, value: str) -> str:
        if len(value) > widths[i]:
            value = value[: max(widths[i] - 1, 0)] + "…"
        return value.rjust(widths[i]) if right[i] else value.ljust(widths[i])

    text = Text()
    text.append(gap.join(cell(i, header[i]) for i in shown).rstrip() + "\n", style="bold")
    for job, row in zip(jobs, rows, strict=True):
        for position, i in enumerate(shown):
            if position:
                text.append(gap)
            value = cell(i, row[i])
            text.append(value.rstrip() if i == 5 else value, style=_ls_style(job) if i == 1 else "")
        text.append("\n")
    text.rstrip()
    return text


def _ls_style(job: Job) -> str:
    return _STYLE.get(job.status, "")


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
        ("step", step_text(job) or ""),
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
