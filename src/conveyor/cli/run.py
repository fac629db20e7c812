"""``conveyor run``: send a JSONL file of HTTP requests as fast as the limits allow; resume.

Thin: it turns the options (`run_args`) into `conveyor.http` configuration, shows progress,
prints the summary, and maps the ending to an exit code. The work is `conveyor.http.prepare`
and `Batch`; the formatting is `run_view`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import signal
import sys
from typing import TYPE_CHECKING

from .._loop import run as run_loop
from .run_args import DESCRIPTION, EPILOG, RUN, RunOptions, add_arguments, options_from_args

if TYPE_CHECKING:
    import argparse
    from collections.abc import Mapping

    from rich.console import Console

    from ..http import Batch, BatchResult, Plan

__all__ = [
    "DESCRIPTION",
    "EPILOG",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_REFUSED",
    "EXIT_STOPPED",
    "RUN",
    "RunOptions",
    "add_arguments",
    "options_from_args",
    "run_command",
]

EXIT_OK = 0
EXIT_FAILED = 1  # the run finished, and some requests of the input have failed results
EXIT_REFUSED = 2  # bad options or files: nothing was sent
EXIT_STOPPED = 3  # stopped admitting early (budget reached, quota exhausted): resumable
EXIT_INTERRUPTED = 130  # Ctrl-C (SIGINT); SIGTERM gives 143


def _error(text: str) -> None:
    print(f"conveyor run: {text}", file=sys.stderr, flush=True)


def run_command(
    args: argparse.Namespace,
    *,
    console: Console | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    """Run ``conveyor run``; return the exit status."""
    from rich.console import Console

    from ..errors import ConfigError
    from ..http import BatchError, prepare
    from ..http.output import check_writable

    console = console or Console(highlight=False)
    try:
        options = options_from_args(args, os.environ if environ is None else environ)
        if options.summary_json is not None:
            check_writable(options.summary_json, "--summary-json")
            _refuse_summary_over_a_file(options)
        plan = prepare(options.files, options.endpoint)
    except (ConfigError, BatchError) as exc:
        _error(str(exc))
        return EXIT_REFUSED
    except KeyboardInterrupt:  # while checking a large input: nothing was sent or written
        _error("interrupted before sending anything")
        return EXIT_INTERRUPTED
    try:
        return _run_plan(plan, options, console)
    except BatchError as exc:
        _error(str(exc))
        return EXIT_REFUSED
    finally:
        plan.close()


def _refuse_summary_over_a_file(options: RunOptions) -> None:
    """Refuse a --summary-json that would replace the requests or the results file."""
    from ..http import OutputError

    summary = options.summary_json
    assert summary is not None
    files = options.files
    for what, path in (("the requests file", files.input), ("the results file (-o)", files.output)):
        try:
            same = summary.resolve() == path.resolve() or (
                summary.exists() and path.exists() and summary.samefile(path)
            )
        except OSError:
            same = False  # what cannot be resolved is checked, and refused, by what reads it
        if same:
            msg = f"--summary-json names {what} {path}, which it would replace: choose another path"
            raise OutputError(msg)


def _run_plan(plan: Plan, options: RunOptions, console: Console) -> int:
    from ..http import Batch, BatchResult, BatchTally
    from .run_view import empty_summary, start_line

    for warning in plan.warnings:
        _error(f"warning: {warning}")
    if plan.torn_bytes:
        _error(
            f"note: the last line of {plan.files.output} was cut short by an interruption;"
            " it was removed and its request runs again"
        )
    if plan.to_run == 0:
        if plan.requests == 0:
            text = f"{plan.files.input} holds no requests"
        else:
            text = f"all {plan.requests:,} requests already have results in {plan.files.output}"
        console.print(f"conveyor run: {text}: nothing to send", soft_wrap=True)
        nothing = BatchResult(
            summary=empty_summary(options.limits.concurrency),
            tally=BatchTally(total=0, skipped=plan.already_done),
            interrupted=False,
        )
        return _finish(nothing, plan, options, console, signal_number=None)
    batch = Batch(plan, limits=options.limits, retry=options.retry, llm=options.llm)
    if batch.redactor.too_short:
        _error(
            "warning: a --header-env value is shorter than 8 characters, too short to be"
            " redacted from the results if the API echoes it"
        )
    console.print(start_line(plan, options.limits, options.endpoint), soft_wrap=True)
    # What start-up made (modules, the plan) lives as long as the run: collected once and
    # frozen, a full collection during the run walks only what the run makes. Measured: a
    # pause of 50-70 ms, every few thousand requests, that stalls every request in flight.
    gc.collect()
    gc.freeze()
    try:
        return _run_batch(batch, plan, options, console)
    finally:
        gc.unfreeze()  # a caller that runs again in this process gets its heap back


def _run_batch(batch: Batch, plan: Plan, options: RunOptions, console: Console) -> int:
    interrupt = _Interrupt(batch)
    try:
        result = run_loop(_drive(batch, options, console, interrupt))
    except KeyboardInterrupt:  # a second Ctrl-C: stop at once (every line written is whole)
        _error("stopped at once; run the same command again to resume")
        return EXIT_INTERRUPTED
    return _finish(result, plan, options, console, signal_number=interrupt.signal_number)


class _Interrupt:
    """Ctrl-C / SIGTERM once: stop gracefully; twice: stop at once."""

    def __init__(self, batch: Batch) -> None:
        self.batch = batch
        self.signal_number: int | None = None

    def __call__(self, signal_number: int) -> None:
        if self.signal_number is not None:
            raise KeyboardInterrupt
        self.signal_number = signal_number
        _error(
            "stopping: requests in flight are cancelled and run again when you run the same"
            " command (press Ctrl-C again to quit at once)"
        )
        self.batch.stop()


async def _drive(
    batch: Batch, options: RunOptions, console: Console, interrupt: _Interrupt
) -> BatchResult:
    loop = asyncio.get_running_loop()
    handled = []
    for number in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not on this platform
            loop.add_signal_handler(number, interrupt, number)
            handled.append(number)
    mode = options.progress
    if mode == "auto":
        mode = "rich" if console.is_terminal else "plain"
    show = asyncio.ensure_future(_show(batch, mode, console, options))
    try:
        return await batch.run()
    finally:
        show.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await show
        for number in handled:
            loop.remove_signal_handler(number)


async def _show(batch: Batch, mode: str, console: Console, options: RunOptions) -> None:
    """Refresh the progress display until cancelled (then show the last frame)."""
    from rich.live import Live

    from ..http.tally import Progress, RateMeter, snapshot
    from .run_view import progress_line, progress_view

    loop = asyncio.get_running_loop()
    started = loop.time()
    limits = options.limits
    # The run's first window, or its full buckets, go at once: the meter counts them in.
    meter = RateMeter(window_s=limits.window_s or limits.bucket_s)

    def frame() -> Progress:
        return snapshot(
            batch.tally,
            meter,
            now=loop.time(),
            started=started,
            rpm_limit=limits.requests_per_minute,
            tpm_limit=limits.tokens_per_minute,
            itpm_limit=limits.input_tokens_per_minute,
            otpm_limit=limits.output_tokens_per_minute,
        )

    frame()  # the first sample: rates count from the start
    if mode == "rich":
        with Live(console=console, auto_refresh=False) as live:
            try:
                while True:
                    live.update(progress_view(frame()), refresh=True)
                    await asyncio.sleep(0.25)
            finally:
                live.update(progress_view(frame()), refresh=True)
    elif mode == "plain":
        # Written whole, unwrapped, and flushed: logs and pipes read one line per interval.
        out = console.file
        while True:
            await asyncio.sleep(options.progress_interval_s)
            out.write(progress_line(frame()) + "\n")
            out.flush()


def _finish(
    result: BatchResult,
    plan: Plan,
    options: RunOptions,
    console: Console,
    *,
    signal_number: int | None,
) -> int:
    from ..http.output import write_text_atomic
    from .run_view import batch_summary_table, summary_record

    files = options.files
    console.print(batch_summary_table(result))
    console.print(f"Results: {files.output}", soft_wrap=True)
    if options.summary_json is not None:
        record = summary_record(result, input_path=files.input, output=files.output)
        try:
            write_text_atomic(options.summary_json, json.dumps(record, indent=2) + "\n")
        except OSError as exc:  # the results are whole; only the summary is missing
            _error(f"could not write the summary to {options.summary_json}: {exc.strerror or exc}")
    tally = result.tally
    if result.halted is not None:
        console.print(
            f"Stopped: {result.halted}. {tally.not_started + tally.cancelled:,} request(s) were"
            " not finished; they stay pending and run when you run the same command again.",
            soft_wrap=True,
        )
        return EXIT_STOPPED
    if result.interrupted:
        left = max((tally.total or 0) - tally.done, 0)
        console.print(
            f"Interrupted: {tally.cancelled:,} request(s) in flight were cancelled. They and"
            f" the rest, {left:,} in all, run when you run the same command again.",
            soft_wrap=True,
        )
        return EXIT_INTERRUPTED if signal_number in (None, signal.SIGINT) else 128 + signal_number
    invalid = tally.invalid
    failed = result.summary.failed - invalid + plan.failed_before
    if invalid:
        # Sending it again cannot help a line that cannot be sent: the line must change first.
        console.print(
            f"{invalid:,} line(s) of {files.input} could not be sent (error"
            f' "invalid_line" in {files.output}, with the reason): fix them in {files.input},'
            " then run the same command with --retry-failed.",
            soft_wrap=True,
        )
    if failed:
        console.print(
            f"{failed:,} request(s) have failed results in {files.output} (see their"
            ' "error"); run the same command with --retry-failed to send them again.',
            soft_wrap=True,
        )
    return EXIT_FAILED if failed or invalid else EXIT_OK
