"""The options of ``conveyor jobs ACTION``: every action, its one line and its description."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from .._flags import add_duration
from .subcommands import Action, add_actions

__all__ = [
    "JOBS",
    "JOBS_ACTIONS",
    "JOBS_EPILOG",
    "STATES",
    "STATUSES",
    "STORE_FALLBACK",
    "add_jobs_arguments",
    "store_default",
]

STATUSES = ("queued", "running", "cancelling", "completed", "failed", "cancelled")
STATES = ("pending", "running", "succeeded", "failed", "cancelled")
#: The store of every job command when neither --store nor $CONVEYOR_STORE names one.
STORE_FALLBACK = "sqlite:///conveyor-jobs.db"


def store_default() -> str:
    """``$CONVEYOR_STORE``, else `STORE_FALLBACK`: read when the command line is built."""
    return os.environ.get("CONVEYOR_STORE") or STORE_FALLBACK


JOBS_EPILOG = """\
examples:
  export CONVEYOR_STORE=sqlite:///jobs.db     # the store of every command below
  JOB=$(conveyor jobs submit extract emails.jsonl --concurrency 20 --attempts 3)
  conveyor jobs watch "$JOB"                  # live bar; a line per change when piped
  conveyor jobs results "$JOB" --state failed -o failed.jsonl
  conveyor jobs retry "$JOB"                  # run only the failed items again
  conveyor jobs budget "$JOB" 25              # raise the spend budget to $25: it goes on

The store is --store, or $CONVEYOR_STORE, or sqlite:///conveyor-jobs.db: give workers and
these commands the same one.
"""

#: ``conveyor jobs`` as ``conveyor --help`` lists it, and its own help.
JOBS = Action(
    "jobs",
    "submit, list, show, watch, cancel and retry durable jobs",
    "Durable jobs: submitted here, run by `conveyor worker` processes.",
    JOBS_EPILOG,
)
JOBS_ACTIONS = (
    Action(
        "submit",
        "create a job: one item per line of a JSONL file; prints its id",
        "Create a job: one item per line of a JSONL file (any JSON value; the `http` tasks\n"
        "take the request lines of `conveyor run`). Prints the job's id. A `conveyor worker`\n"
        "that has the task runs it; until one does, the job waits, queued. With --app, the\n"
        "task's name and every item are checked first, and nothing is written if one is wrong.",
    ),
    Action(
        "ls",
        "list jobs, newest first",
        "List jobs, newest first: id, status, progress, items, failed items, time, task.",
    ),
    Action(
        "show",
        "status, progress, step, counts and summary of one job",
        "Everything about one job: status, progress, its step (or what it waits for), counts,\n"
        "timing, options and error. --json prints it as the HTTP API does.",
    ),
    Action(
        "watch",
        "follow a job's progress until it is done",
        "Follow a job until it is done: a live bar on a terminal, else a line per change.\n"
        "Exits 0 when the job completed with no failed item, else 1.",
    ),
    Action(
        "cancel",
        "cancel a job: in-flight items are cancelled",
        "Cancel a job: its pending items are cancelled now, in-flight ones by their worker.\n"
        "A job already done is left as it is.",
    ),
    Action(
        "retry",
        "run a job's failed items again, under the same job",
        "Run a job's failed items again, under the same job (a completed job reopens). Prints\n"
        "how many items were queued again.",
    ),
    Action(
        "budget",
        "set a job's spend budget in US dollars; a job that reached it goes on",
        "Set a job's spend budget (max_cost_usd). A job that stopped at its old budget keeps\n"
        "its items pending: raise it, and a worker starts them again under the same job.",
    ),
    Action(
        "results",
        "the items and their results, as JSONL",
        "The job's items and their results, one JSON object per line, in item order:\n"
        "index, input, state, attempts, result or error, latency.",
    ),
)


def add_jobs_arguments(jobs: argparse.ArgumentParser) -> None:
    """The actions of ``conveyor jobs`` and their options."""
    store = store_default()
    jobs.add_argument("--store", default=store, metavar="URL", help=f"job store URL ({store})")
    parsers = add_actions(jobs, "jobs_command", JOBS_ACTIONS)
    for parser in parsers.values():
        # Also accepted after the action; SUPPRESS keeps the value given before it otherwise.
        parser.add_argument(
            "--store", default=argparse.SUPPRESS, metavar="URL", help=f"job store URL ({store})"
        )
    _submit_arguments(parsers["submit"])
    ls = parsers["ls"]
    ls.add_argument("--status", choices=STATUSES, help="only jobs in this status")
    ls.add_argument("--limit", type=int, default=20, metavar="N", help="how many (20)")
    ls.add_argument("--json", action="store_true", help="one JSON object per line")
    for action in ("show", "watch", "cancel", "retry", "budget", "results"):
        parsers[action].add_argument("job_id", metavar="JOB_ID", help="the job's id")
    parsers["show"].add_argument("--json", action="store_true", help="print the job as JSON")
    watch = parsers["watch"]
    add_duration(
        watch,
        "--interval",
        dest="interval_s",
        default=0.5,
        help="how often to read the job (500ms)",
        old="--interval-s",
    )
    watch.add_argument(
        "--progress",
        choices=("auto", "rich", "plain", "none"),
        default="auto",
        help="a live bar on a terminal (rich), a line per change (plain), or only the last"
        " line, once done (none); auto: rich on a terminal, else plain",
    )
    parsers["budget"].add_argument(
        "usd", type=float, metavar="USD", help="the new budget in US dollars (> 0)"
    )
    results = parsers["results"]
    results.add_argument("--state", choices=STATES, help="only items in this state")
    results.add_argument("-o", "--output", type=Path, help="write to this file (default: stdout)")


def _submit_arguments(submit: argparse.ArgumentParser) -> None:
    submit.add_argument("task", help="the task's name (`http` for request lines)")
    submit.add_argument(
        "file", type=Path, help="JSONL: one item (any JSON value) per line; - = stdin"
    )
    submit.add_argument(
        "--concurrency", type=int, default=10, metavar="N", help="items in flight per worker (10)"
    )
    submit.add_argument(
        "--attempts",
        type=int,
        default=1,
        metavar="N",
        help="tries per item, the first included (1: no retry)",
    )
    add_duration(
        submit,
        "--timeout",
        dest="timeout_s",
        default=None,
        help="one attempt's time limit, e.g. 60s (none)",
        old="--timeout-s",
    )
    submit.add_argument(
        "--limiter",
        action="append",
        default=[],
        metavar="NAME",
        help="a shared limiter's name (repeatable)",
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
        help="check the task's name and the items before writing; without it the name is not"
        " checked, and a job for a task no worker has waits, queued",
    )
