"""`conveyor demo`: the engine against a simulated flaky API, with live progress and a summary.

The simulated API answers in about 50 ms (lognormal), asks for a retry now and then
(HTTP 503 with Retry-After), drops a few connections, and rejects a few records for good. The
demo runs it with retries and shows what settled, and how close the run came to the ideal time
the concurrency allows.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import conveyor

from .render import Tally, progress_line, summary_table

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ["DemoOptions", "run_demo"]


@dataclass(frozen=True, kw_only=True)
class DemoOptions:
    """What the demo runs."""

    items: int = 2_000
    concurrency: int = 100
    latency_ms: float = 50.0
    seed: int = 7


class ServiceUnavailable(Exception):
    """What the simulated API raises for a 503, with the headers an HTTP client would carry."""

    status_code = 503

    def __init__(self, retry_after_s: float) -> None:
        super().__init__("503 Service Unavailable")
        self.headers = {"retry-after": f"{retry_after_s:g}"}


class InvalidRecord(Exception):
    """A 4xx the simulated API gives for a record it will never accept."""

    status_code = 422


def make_api(
    options: DemoOptions,
) -> tuple[Callable[[int], Awaitable[dict[str, object]]], list[float]]:
    """Build the simulated API call; also return the list its latencies are written to."""
    rng = random.Random(options.seed)
    mu = options.latency_ms / 1000
    latencies: list[float] = []

    async def release(record_id: int) -> dict[str, object]:
        latency = rng.lognormvariate(0, 0.25) * mu
        latencies.append(latency)
        await asyncio.sleep(latency)
        roll = rng.random()
        if roll < 0.04:
            raise ServiceUnavailable(retry_after_s=0.2)
        if roll < 0.06:
            raise ConnectionResetError("connection reset by peer")
        if record_id % 97 == 13:
            raise InvalidRecord(f"record {record_id} is not in quarantine")
        return {"id": record_id, "status": "released"}

    return release, latencies


async def _run(options: DemoOptions, console: Console) -> conveyor.Report[int, dict[str, object]]:
    release, _ = make_api(options)
    tally = Tally(total=options.items)

    def on_event(event: conveyor.Event) -> None:
        if isinstance(event, conveyor.ItemStarted):
            if event.attempt > 1:
                tally.retrying -= 1
            tally.started += 1
        elif isinstance(event, conveyor.ItemRetrying):
            tally.retrying += 1
        elif isinstance(event, conveyor.ItemFinished):
            state = event.outcome.state
            setattr(tally, state, getattr(tally, state) + 1)

    retry = conveyor.Retry(attempts=4, base_delay_s=0.05, max_delay_s=1.0, timeout_s=2.0)
    work = conveyor.map(
        release,
        range(options.items),
        concurrency=options.concurrency,
        retry=retry,
        on_event=on_event,
    )
    task = asyncio.ensure_future(work)
    started = time.monotonic()
    if console.is_terminal:
        columns = (
            TextColumn("[bold]releasing"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(
                "[green]{task.fields[ok]} ok [red]{task.fields[failed]} failed"
                " [yellow]{task.fields[retrying]} retrying"
            ),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=console, transient=False) as progress:
            bar = progress.add_task("run", total=options.items, ok=0, failed=0, retrying=0)
            while not task.done():
                progress.update(
                    bar,
                    completed=tally.done,
                    ok=tally.succeeded,
                    failed=tally.failed,
                    retrying=tally.retrying,
                )
                await asyncio.wait([task], timeout=0.1)
            progress.update(
                bar,
                completed=tally.done,
                ok=tally.succeeded,
                failed=tally.failed,
                retrying=tally.retrying,
            )
    else:
        while not task.done():
            await asyncio.wait([task], timeout=1.0)
            console.print(progress_line(tally, time.monotonic() - started))
    return await task


def run_demo(options: DemoOptions, console: Console | None = None) -> int:
    """Run the demo; print progress and the summary. Returns the process exit code."""
    console = console or Console()
    console.print(
        f"[bold]conveyor demo[/]: {options.items:,} calls to a simulated API"
        f" (~{options.latency_ms:g} ms, 4% 503 + Retry-After, 2% dropped connections,"
        f" ~1% invalid records), concurrency {options.concurrency}"
    )
    report = asyncio.run(_run(options, console))
    s = report.summary
    console.print(summary_table(s))
    attempts = s.succeeded + s.failed + s.retries
    busy_s = attempts * s.latency_mean_s / options.concurrency
    console.print(
        f"Time the calls need at concurrency {options.concurrency}: {attempts:,} attempts x"
        f" {s.latency_mean_s * 1000:.1f} ms / {options.concurrency} = {busy_s:.2f} s;"
        f" the run took {s.duration_s:.2f} s, the rest being the waits its retries asked for"
        " (Retry-After, backoff)."
    )
    if report.failed:
        first = report.failed[0]
        console.print(
            f"{len(report.failed)} item(s) failed for good, e.g. item {first.index} after"
            f" {first.attempts} attempt(s): {first.error_type}: {first.error_message}"
        )
    return 0


def main_exit(options: DemoOptions) -> None:
    """Entry used by the CLI."""
    sys.exit(run_demo(options))
