"""Pure formatting for ``conveyor run``: values in, strings or rich renderables out. No printing."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from ..engine.report import Summary
from .render import summary_table

if TYPE_CHECKING:
    from pathlib import Path

    from ..http import BatchLimits, BatchResult, Endpoint, Plan
    from ..http.tally import Progress

__all__ = [
    "ESTIMATED",
    "batch_summary_table",
    "empty_summary",
    "format_amount",
    "format_duration",
    "format_usd",
    "progress_line",
    "progress_view",
    "spend_text",
    "split_rates",
    "start_line",
    "summary_record",
]


def format_duration(seconds: float) -> str:
    """A short duration: ``"42s"``, ``"3m05s"``, ``"2h07m"``.

    >>> format_duration(42.4), format_duration(185), format_duration(7620)
    ('42s', '3m05s', '2h07m')
    """
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def _rate(value: float, limit: float | None) -> str:
    return f"{value:,.0f}/{limit:,.0f}" if limit is not None else f"{value:,.0f}"


def _eta(progress: Progress) -> str:
    return "?" if progress.eta_s is None else format_duration(progress.eta_s)


def _count(progress: Progress) -> str:
    if progress.total is None:
        return f"{progress.done:,}"
    pct = f" ({progress.done * 100 // progress.total}%)" if progress.total else ""
    return f"{progress.done:,}/{progress.total:,}{pct}"


def format_amount(value: float) -> str:
    """A rate as a person writes it: ``3,300,000``, never ``3.3e+06``.

    >>> format_amount(3_300_000.0), format_amount(0.5), format_amount(1234.5)
    ('3,300,000', '0.5', '1,234.5')
    """
    return f"{value:,.0f}" if value == int(value) else f"{value:,.6g}"


def format_usd(value: float) -> str:
    """Dollars with enough digits to see small LLM costs.

    >>> format_usd(0.001234), format_usd(12.5)
    ('$0.0012', '$12.50')
    """
    return f"${value:,.2f}" if value >= 1 else f"${value:.4f}"


def spend_text(progress: Progress) -> str:
    """The answers' usage (tokens in/out), cost and projected cost; cache hits.

    Empty before any of them. The projection is shown only when it says more than the cost
    (the run is not over, and it rounds to more): never a projection below what is spent.
    """
    p = progress
    if not (p.tokens_in or p.tokens_out or p.cache_hits):
        return ""
    text = f"usage {p.tokens_in:,} in / {p.tokens_out:,} out tokens"
    if p.cost_usd > 0:  # nothing priced yet (or a model with no price): no cost to show
        spent = format_usd(p.cost_usd)
        text += f", {spent}"
        projected = p.projected_cost_usd
        if projected is not None and projected > p.cost_usd and format_usd(projected) != spent:
            text += f" (projected {format_usd(projected)})"
    if p.cache_hits:
        text += f", {p.cache_hits:,} cached"
    return text


def split_rates(progress: Progress) -> str:
    """Input and output tokens a minute against their limits; empty when neither is set.

    The input figure is marked ``~``: it is each request's estimate until its answer's usage
    replaces it. The output figure is the answers' own.

    >>> from conveyor.http.tally import Progress
    >>> p = Progress(done=0, total=None, succeeded=0, failed=0, retrying=0,
    ...              requests_per_minute=0.0, tokens_per_minute=0.0, rpm_limit=None,
    ...              tpm_limit=None, rate_limited=0, elapsed_s=0.0, eta_s=None,
    ...              input_tokens_per_minute=1950.4, output_tokens_per_minute=240.0,
    ...              itpm_limit=2000, otpm_limit=250)
    >>> split_rates(p)
    'in ~1,950/2,000 tpm, out 240/250 tpm'
    """
    p = progress
    if p.itpm_limit is None and p.otpm_limit is None:
        return ""
    return (
        f"in ~{_rate(p.input_tokens_per_minute, p.itpm_limit)} tpm,"
        f" out {_rate(p.output_tokens_per_minute, p.otpm_limit)} tpm"
    )


#: What ``~`` marks: tokens as the limiter counts them, each request's estimate until its
#: answer's usage replaces it. Real usage is in the spend part (``usage N in / M out``).
ESTIMATED = "~ estimated when sent, until answered"


def progress_line(progress: Progress) -> str:
    """One plain line of progress, for output that is not a terminal.

    The token rates are the limiter's (marked ``~``: estimated when sent); the tokens counted
    from the answers come after ``usage``.
    """
    p = progress
    spend = spend_text(p)
    split = split_rates(p)
    return (
        f"{_count(p)} done: {p.succeeded:,} ok, {p.failed:,} failed, {p.retrying:,} retrying;"
        f" {_rate(p.requests_per_minute, p.rpm_limit)} rpm,"
        f" ~{_rate(p.tokens_per_minute, p.tpm_limit)} tpm"
        + (f", {split}" if split else "")
        + f" ({ESTIMATED}); {p.rate_limited:,} 429s;"
        + (f" {spend};" if spend else "")
        + f" {format_duration(p.elapsed_s)} elapsed, ETA {_eta(p)}"
    )


def progress_view(progress: Progress) -> Group:
    """The live display on a terminal: a bar with counts and ETA, then rates and 429s."""
    p = progress
    grid = Table.grid(padding=(0, 1))
    bar = ProgressBar(total=float(p.total) if p.total else None, completed=float(p.done), width=40)
    grid.add_row(bar, Text(_count(p)), Text(f"ETA {_eta(p)}"))
    line = Text()
    line.append(f"{p.succeeded:,} ok", style="green")
    line.append("  ")
    line.append(f"{p.failed:,} failed", style="red" if p.failed else "")
    line.append("  ")
    line.append(f"{p.retrying:,} retrying", style="yellow" if p.retrying else "")
    line.append(
        f"  {_rate(p.requests_per_minute, p.rpm_limit)} rpm"
        f"  ~{_rate(p.tokens_per_minute, p.tpm_limit)} tpm  "
    )
    line.append(f"{p.rate_limited:,} 429s", style="red" if p.rate_limited else "")
    line.append(f"  {format_duration(p.elapsed_s)}")
    rows: list[Table | Text] = [grid, line]
    split = split_rates(p)
    if split:
        rows.append(Text(f"{split}  ({ESTIMATED})"))
    elif p.tokens_per_minute or p.tpm_limit is not None:
        rows.append(Text(f"({ESTIMATED})", style="dim"))
    spend = spend_text(p)
    if spend:
        rows.append(Text(spend))
    return Group(*rows)


def start_line(plan: Plan, limits: BatchLimits, endpoint: Endpoint) -> str:
    """The line printed before sending: what will be sent, where, and within which limits."""
    where = endpoint.base_url or "the urls in the file"
    rates = []
    for value, unit in (
        (limits.requests_per_minute, "rpm"),
        (limits.tokens_per_minute, "tpm"),
        (limits.input_tokens_per_minute, "input tpm"),
        (limits.output_tokens_per_minute, "output tpm"),
    ):
        if value is not None:
            rates.append(f"{format_amount(value)} {unit}")
    if rates and limits.window_s is not None:
        rates[-1] += f" (enforced over {limits.window_s:g}s windows)"
    if rates and limits.bucket_s is not None:
        rates[-1] += f" (token buckets holding {limits.bucket_s:g}s of each)"
    limits_text = ", ".join(rates) if rates else "no rate limits set"
    return (
        f"conveyor run: {plan.to_run:,} request(s) to send from {plan.files.input} to {where};"
        f" {plan.already_done:,} already in {plan.files.output};"
        f" concurrency {limits.concurrency}, {limits_text}"
    )


def batch_summary_table(result: BatchResult) -> Table:
    """The summary table of a run, with the batch's own rows added."""
    tally = result.tally
    title = "conveyor run (interrupted)" if result.interrupted else "conveyor run"
    table = summary_table(result.summary, title=title)
    table.add_row("429 answers", f"{tally.rate_limited:,}")
    table.add_row("invalid lines", f"{tally.invalid:,}")
    table.add_row("skipped (already in results)", f"{tally.skipped:,}")
    if tally.tokens_in or tally.tokens_out:
        table.add_row("tokens in / out", f"{tally.tokens_in:,} / {tally.tokens_out:,}")
        if tally.unpriced and not tally.cost_usd:
            cost = "unknown: no price for these models (add them with --prices FILE)"
        else:
            cost = format_usd(tally.cost_usd)
            if tally.unpriced:
                cost += f" (and {tally.unpriced:,} answers of models with no price)"
        table.add_row("cost", cost)
    if tally.cache_hits:
        table.add_row("answered from the cache", f"{tally.cache_hits:,}")
    if result.halted is not None:
        table.add_row("not started (pending)", f"{tally.not_started:,}")
    return table


def summary_record(result: BatchResult, *, input_path: Path, output: Path) -> dict[str, Any]:
    """The ``--summary-json`` object: the summary's figures, 429s, counts and the two paths."""
    tally = result.tally
    return {
        **result.summary.to_dict(),
        "rate_limited": tally.rate_limited,
        "invalid_lines": tally.invalid,
        "skipped": tally.skipped,
        "interrupted": result.interrupted,
        "halted": result.halted,
        "not_started": tally.not_started,
        "tokens_in": tally.tokens_in,
        "tokens_out": tally.tokens_out,
        "cost_usd": round(tally.cost_usd, 6),
        "unpriced_answers": tally.unpriced,
        "cache_hits": tally.cache_hits,
        "input": str(input_path),
        "output": str(output),
    }


def empty_summary(concurrency: int) -> Summary:
    """The summary of a run that had nothing to send."""
    return Summary.empty(concurrency=concurrency)
