"""``conveyor worker`` and ``conveyor jobs submit|ls|show|watch|cancel|retry|budget|results``."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import sys
import time
from array import array
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .jobs_worker import (
    EXIT_UNAVAILABLE,
    WORKER_DESCRIPTION,
    WORKER_EPILOG,
    add_worker_arguments,
    worker_command,
)

if TYPE_CHECKING:
    from collections.abc import Coroutine, Iterator

    from ..jobs.client import Jobs
    from ..jobs.model import JobOptions

__all__ = ["add_commands", "jobs_command"]

STORE_DEFAULT = os.environ.get("CONVEYOR_STORE", "sqlite:///conveyor-jobs.db")
STATUSES = ("queued", "running", "cancelling", "completed", "failed", "cancelled")
STATES = ("pending", "running", "succeeded", "failed", "cancelled")

JOBS_EPILOG = """\
examples:
  conveyor jobs submit analyze emails.jsonl --concurrency 20 --attempts 3
  conveyor jobs submit http requests.jsonl --limiter openai
  conveyor jobs watch 0190b1d2-...            # live bar; a line per change when piped
  conveyor jobs results 0190b1d2-... --state failed -o failed.jsonl
  conveyor jobs retry 0190b1d2-...            # run only the failed items again
  conveyor jobs budget 0190b1d2-... 25        # raise the spend budget to $25: it goes on

The store is --store, or $CONVEYOR_STORE, or sqlite:///conveyor-jobs.db.
"""


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``worker`` and ``jobs`` on the ``conveyor`` command."""
    worker = commands.add_parser(
        "worker",
        help="run durable jobs from a store (SQLite by default) until stopped",
        description=WORKER_DESCRIPTION,
        epilog=WORKER_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_worker_arguments(worker, STORE_DEFAULT)
    jobs = commands.add_parser(
        "jobs",
        help="submit, list, show, watch, cancel and retry durable jobs",
        description="Durable jobs: submitted here, run by `conveyor worker` processes.",
        epilog=JOBS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    jobs.add_argument("--store", default=STORE_DEFAULT, help=f"job store URL ({STORE_DEFAULT})")
    sub = jobs.add_subparsers(dest="jobs_command", metavar="ACTION", required=True)
    submit = sub.add_parser("submit", help="create a job: one item per line of a JSONL file")
    _store_here(submit)
    submit.add_argument("task", help="the task's name (`http` for request lines)")
    submit.add_argument(
        "file", type=Path, help="JSONL: one item (any JSON value) per line; - = stdin"
    )
    submit.add_argument(
        "--concurrency", type=int, default=10, help="items in flight per worker (10)"
    )
    submit.add_argument("--attempts", type=int, default=1, help="attempts per item (1: no retries)")
    submit.add_argument("--timeout-s", type=float, help="one attempt's limit in seconds (none)")
    submit.add_argument(
        "--limiter", action="append", default=[], help="a shared limiter's name (repeatable)"
    )
    submit.add_argument(
        "--max-cost",
        type=float,
        metavar="USD",
        help="http tasks (LLM jobs): stop starting items before the spend could pass this many"
        " US dollars; the rest stays pending (none)",
    )
    submit.add_argument(
        "--idempotency-key",
        metavar="KEY",
        help="submit at most once: a submit again with this key (after a lost answer or an"
        " unreachable store) prints the first job instead of creating another",
    )
    submit.add_argument(
        "--app",
        metavar="MODULE:NAME",
        help="check the task name and the items before writing (without it the task is not"
        " checked: a job for a task no worker has waits, queued, until one does)",
    )
    ls = sub.add_parser("ls", help="list jobs, newest first")
    _store_here(ls)
    ls.add_argument("--status", choices=STATUSES, help="only jobs in this status")
    ls.add_argument("--limit", type=int, default=20, help="how many (20)")
    ls.add_argument("--json", action="store_true", help="one JSON object per line")
    show = sub.add_parser("show", help="status, progress, counts and summary of one job")
    _store_here(show)
    show.add_argument("job_id")
    show.add_argument("--json", action="store_true", help="print the job as JSON")
    watch = sub.add_parser("watch", help="follow a job's progress live until it is done")
    _store_here(watch)
    watch.add_argument("job_id")
    watch.add_argument("--interval-s", type=float, default=0.5, help="poll interval (0.5)")
    watch.add_argument(
        "--progress",
        choices=("auto", "rich", "plain"),
        default="auto",
        help="a live bar on a terminal, else a line per change (auto)",
    )
    cancel = sub.add_parser("cancel", help="cancel a job: in-flight items are cancelled")
    _store_here(cancel)
    cancel.add_argument("job_id")
    retry = sub.add_parser("retry", help="run a job's failed items again, under the same job")
    _store_here(retry)
    retry.add_argument("job_id")
    budget = sub.add_parser(
        "budget",
        help="set a job's spend budget (max_cost_usd): a job that reached it goes on",
    )
    _store_here(budget)
    budget.add_argument("job_id")
    budget.add_argument("usd", type=float, metavar="USD", help="the new budget in US dollars (> 0)")
    results = sub.add_parser("results", help="the items and their results, as JSONL")
    _store_here(results)
    results.add_argument("job_id")
    results.add_argument("--state", choices=STATES, help="only items in this state")
    results.add_argument("-o", "--output", type=Path, help="write to this file (default: stdout)")


def _store_here(parser: argparse.ArgumentParser) -> None:
    # Also accepted after the action; SUPPRESS keeps the value given before it otherwise.
    parser.add_argument("--store", default=argparse.SUPPRESS, help="job store URL")


def jobs_command(args: argparse.Namespace) -> int:
    """Run ``conveyor worker`` or ``conveyor jobs ...``."""
    if args.command == "worker":
        return worker_command(args)
    from ..errors import ConveyorError
    from ..jobs.errors import StoreUnavailable

    try:
        return _run(_ACTIONS[args.jobs_command](args))
    except StoreUnavailable as exc:
        print(f"conveyor jobs {args.jobs_command}: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except ConveyorError as exc:
        print(f"conveyor jobs {args.jobs_command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _run(coro: Coroutine[Any, Any, int]) -> int:
    return asyncio.run(coro)


def _open(args: argparse.Namespace, app: Any = None, *, create: bool = False) -> Jobs:
    """The jobs of ``--store``; only ``submit`` creates a SQLite store that is not there."""
    from ..jobs.client import Jobs, open_store

    return Jobs(open_store(args.store, create=create), app=app)


def _lines(path: Path, numbers: array[int]) -> Iterator[Any]:
    """The items of a JSONL file; `numbers` gets each item's line number (1-based)."""
    from .._json import BadJSON, loads
    from ..jobs.errors import InvalidJob

    # Bytes, decoded line by line: an error names its line.
    stream = sys.stdin.buffer if str(path) == "-" else path.open("rb")
    with stream:
        for number, raw in enumerate(stream, 1):
            if not raw.strip():
                continue
            try:
                # Not UTF-8, not JSON, NaN, a lone surrogate, nested too deep: said in words.
                item = loads(raw)
            except BadJSON as exc:
                msg = f"{path}:{number} {exc.problem} (one JSON value per line)"
                raise InvalidJob(msg) from None
            numbers.append(number)
            yield item


_ITEM = re.compile(r"^item (\d+) (.*)$", re.DOTALL)


def _at_line(exc: Exception, path: Path, numbers: array[int]) -> str:
    """The library's "item N ..." (0-based) as the file's ``path:line`` (1-based, like the API)."""
    text = str(exc)
    found = _ITEM.match(text)
    if found is None or int(found.group(1)) >= len(numbers):
        return text
    index = int(found.group(1))
    return f"{path}:{numbers[index]} (item {index}) {found.group(2)}"


async def _submit(args: argparse.Namespace) -> int:
    from ..jobs.model import JobOptions
    from .jobs_worker import load_app

    if str(args.file) != "-" and not args.file.is_file():
        print(f"conveyor jobs submit: no file {str(args.file)!r}", file=sys.stderr)
        return 2
    options = JobOptions(
        concurrency=args.concurrency,
        attempts=args.attempts,
        timeout_s=args.timeout_s,
        limiters=tuple(args.limiter),
        max_cost_usd=args.max_cost,
    )
    from ..jobs.errors import InvalidJob

    key = args.idempotency_key
    if key is not None and not 0 < len(key) <= 255:
        print(
            f"conveyor jobs submit: --idempotency-key {key!r}: pass 1 to 255 characters",
            file=sys.stderr,
        )
        return 2
    digest = None if key is None else _request_digest(args, options)
    app = load_app(args.app) if args.app else None
    numbers: array[int] = array("L")
    async with _open(args, app, create=True) as jobs:
        try:
            job = await jobs.submit(
                args.task,
                _lines(args.file, numbers),
                options=options,
                idempotency_key=key,
                request_hash=digest,
            )
        except InvalidJob as exc:
            raise InvalidJob(_at_line(exc, args.file, numbers)) from None
    if digest is not None and job.request_hash != digest:
        print(
            f"conveyor jobs submit: --idempotency-key {key!r} was used for another submit"
            f" (job {job.id}, another task, file or options): pick a new key",
            file=sys.stderr,
        )
        return 2
    print(job.id)
    if app is None:
        print(
            f"conveyor jobs submit: warning: task {job.task!r} was not checked (no --app):"
            " if no worker has it, the job waits, queued, until one does",
            file=sys.stderr,
        )
    print(f"submitted: {job.counts.total:,} item(s) for task {job.task!r}", file=sys.stderr)
    return 0


def _request_digest(args: argparse.Namespace, options: JobOptions) -> str | None:
    """What a submit asked (task, options, the file's bytes), to tell a replay from a reuse.

    None for standard input, which cannot be read twice: a key is then trusted as given.
    """
    if str(args.file) == "-":
        return None
    digest = hashlib.sha256()
    digest.update(json.dumps([args.task, options.to_json()]).encode())
    with args.file.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return f"cli-sha256:{digest.hexdigest()}"


async def _ls(args: argparse.Namespace) -> int:
    from rich.console import Console

    from .jobs_view import jobs_table

    async with _open(args) as jobs:
        found = await jobs.list(status=args.status, limit=args.limit)
    if args.json:
        for job in found:
            print(json.dumps(job.to_dict()))
    else:
        Console().print(jobs_table(found, time.time()))
    return 0


async def _show(args: argparse.Namespace) -> int:
    from rich.console import Console

    from .jobs_view import job_table

    async with _open(args) as jobs:
        job = await jobs.get(args.job_id)
    if args.json:
        print(json.dumps(job.to_dict(), indent=2))
    else:
        Console().print(job_table(job, time.time()))
    return 0


async def _watch(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.live import Live

    from .jobs_view import job_line, watch_view

    console = Console()
    rich = args.progress == "rich" or (args.progress == "auto" and console.is_terminal)
    async with _open(args) as jobs:
        last = None
        if rich:
            with Live(console=console, auto_refresh=False) as live:
                async for job in jobs.watch(args.job_id, interval_s=args.interval_s):
                    live.update(watch_view(job, time.time()), refresh=True)
                    last = job
        else:
            async for job in jobs.watch(args.job_id, interval_s=args.interval_s):
                print(job_line(job, time.time()), flush=True)
                last = job
    assert last is not None
    return 0 if last.status == "completed" and not last.counts.failed else 1


async def _cancel(args: argparse.Namespace) -> int:
    async with _open(args) as jobs:
        job = await jobs.cancel(args.job_id)
    print(f"{job.id} {job.status}")
    return 0


async def _retry(args: argparse.Namespace) -> int:
    async with _open(args) as jobs:
        again = await jobs.retry_failed(args.job_id)
    print(f"{again:,} failed item(s) queued again")
    return 0


async def _budget(args: argparse.Namespace) -> int:
    async with _open(args) as jobs:
        job = await jobs.set_budget(args.job_id, args.usd)
    print(f"{job.id} {job.status}: max_cost_usd ${job.options.max_cost_usd:g}")
    return 0


async def _results(args: argparse.Namespace) -> int:
    if args.output is None:
        out = sys.stdout
    else:
        try:
            out = args.output.open("w", encoding="utf-8")
        except OSError as exc:
            print(
                f"conveyor jobs results: cannot write {str(args.output)!r}: {exc.strerror};"
                " check the folder exists and is writable",
                file=sys.stderr,
            )
            return 2
    try:
        async with _open(args) as jobs:
            async for item in jobs.results(args.job_id, state=args.state):
                out.write(json.dumps(item.to_dict(), ensure_ascii=False) + "\n")
        out.flush()
    except BrokenPipeError:
        # The reader stopped (`| head`): not an error of ours. Nothing more goes to stdout,
        # not even Python's flush at exit. 141 = 128 + SIGPIPE, as a shell tool would end.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    finally:
        if out is not sys.stdout:
            out.close()
    return 0


_ACTIONS = {
    "submit": _submit,
    "ls": _ls,
    "show": _show,
    "watch": _watch,
    "cancel": _cancel,
    "retry": _retry,
    "budget": _budget,
    "results": _results,
}
