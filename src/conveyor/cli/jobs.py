"""``conveyor worker`` and ``conveyor jobs submit|ls|show|watch|cancel|retry|budget|results``."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import sys
import time
from array import array
from typing import TYPE_CHECKING, Any

from .jobs_args import JOBS, JOBS_ACTIONS, add_jobs_arguments, store_default
from .jobs_worker import WORKER, add_worker_arguments, failed, worker_command
from .subcommands import add_action, missing_action

if TYPE_CHECKING:
    import argparse
    from collections.abc import Coroutine, Generator
    from pathlib import Path

    from ..jobs.client import Jobs
    from ..jobs.model import JobOptions

__all__ = ["add_commands", "jobs_command"]


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``worker`` and ``jobs`` on the ``conveyor`` command."""
    add_worker_arguments(add_action(commands, WORKER), store_default())
    add_jobs_arguments(add_action(commands, JOBS))


def jobs_command(args: argparse.Namespace) -> int:
    """Run ``conveyor worker`` or ``conveyor jobs ...``."""
    if args.command == "worker":
        return worker_command(args)
    if args.jobs_command is None:
        return missing_action("conveyor jobs", JOBS_ACTIONS)
    return _action(args)


def _action(args: argparse.Namespace) -> int:
    """Run one action; its errors are one line and an exit status, never a traceback."""
    from ..errors import ConveyorError

    try:
        code = _run(_ACTIONS[args.jobs_command](args))
        sys.stdout.flush()  # a reader gone away is found here, not at exit
    except ConveyorError as exc:
        return failed(f"conveyor jobs {args.jobs_command}", exc)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader stopped (`ls --json | head -1`): not an error of ours. Nothing more goes
        # to stdout, not even Python's flush at exit. 141 = 128 + SIGPIPE, as a shell tool ends.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    return code


def _shown(url: str) -> str:
    from .._urls import shown_url

    return shown_url(url)


def _run(coro: Coroutine[Any, Any, int]) -> int:
    return asyncio.run(coro)


def _open(args: argparse.Namespace, app: Any = None, *, create: bool = False) -> Jobs:
    """The jobs of ``--store``; only ``submit`` creates a SQLite store that is not there."""
    from ..jobs.client import Jobs, open_store

    return Jobs(open_store(args.store, create=create), app=app)


def _lines(path: Path, numbers: array[int]) -> Generator[Any, None, None]:
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
    from .jobs_view import unchecked_task_note
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
        lines = _lines(args.file, numbers)
        try:
            job = await jobs.submit(
                args.task, lines, options=options, idempotency_key=key, request_hash=digest
            )
        except InvalidJob as exc:
            raise InvalidJob(_at_line(exc, args.file, numbers)) from None
        finally:
            # The file closes now, not when the collector gets to the reading stopped midway
            # (the error's traceback holds it in a cycle).
            lines.close()
        # Without --app the name is not checked: the tasks jobs of this store ran tell a typo.
        ran = None if app is not None else await _tasks_that_ran(jobs)
    if digest is not None and job.request_hash != digest:
        print(
            f"conveyor jobs submit: --idempotency-key {key!r} was used for another submit"
            f" (job {job.id}, another task, file or options): pick a new key",
            file=sys.stderr,
        )
        return 2
    print(job.id)
    if app is None and ran is not None and job.task not in ran:
        print(
            f"conveyor jobs submit: warning: {unchecked_task_note(job.task, ran)}", file=sys.stderr
        )
    print(f"submitted: {job.counts.total:,} item(s) for task {job.task!r}", file=sys.stderr)
    return 0


async def _tasks_that_ran(jobs: Jobs) -> set[str]:
    """The tasks of the store's recent jobs that a worker started: some worker had them."""
    return {job.task for job in await jobs.list(limit=200) if job.started_at is not None}


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
    elif not found:
        print("no jobs" + (f" {args.status}" if args.status else "") + f" in {_shown(args.store)}")
    else:
        console = Console()
        console.print(jobs_table(found, time.time(), width=console.width), soft_wrap=True)
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
    mode = args.progress
    if mode == "auto":
        mode = "rich" if console.is_terminal else "plain"
    async with _open(args) as jobs:
        last = None
        updates = jobs.watch(args.job_id, interval_s=args.interval_s)
        if mode == "rich":
            with Live(console=console, auto_refresh=False) as live:
                async for job in updates:
                    live.update(watch_view(job, time.time()), refresh=True)
                    last = job
        else:
            async for job in updates:
                if mode == "plain":
                    print(job_line(job, time.time()), flush=True)
                last = job
            if mode == "none" and last is not None:  # the outcome only, once done
                print(job_line(last, time.time()), flush=True)
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
