"""The settle rule: what a job becomes once none of its items is left to run. Pure.

A job with no item pending or running ends (`settled_status`):

- ``cancelled`` when it was being cancelled (``cancelling``);
- ``failed`` when no item succeeded and at least one failed: every item that ran failed (a
  job of one item whose task raised is the common case). Its ``error`` names the first
  failure, by index (`failure_error`): ``"ValueError: bad input"`` for a job of one item,
  ``"all 3 items failed; the first, item 0: ValueError: bad input"`` for more;
- ``completed`` otherwise: at least one item succeeded, and ``counts.failed`` says how many
  did not (a front end shows partial failures from the counts).

A job also ends ``failed`` when it cannot run at all (`conveyor.jobs.store.Store.fail_job`:
an unknown task, a limiter that does not exist): its unsettled items are then cancelled,
which is what tells the two kinds apart (`failed_by_items`). Only a job failed by its items
can retry them (retry-failed reopens it, as it reopens a completed job).

Whatever a task last reported, the step of an ended job reads its final state
(`final_step`), so a page that shows the step never stays on a task's first message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .model import Counts, Job, JobStatus

__all__ = ["failed_by_items", "failure_error", "final_step", "settled_status"]


def settled_status(status: JobStatus, counts: Counts) -> JobStatus:
    """The status a job in `status` ends in once nothing is left to run (see the module).

    >>> from conveyor.jobs.model import Counts
    >>> settled_status("running", Counts(total=1, failed=1))
    'failed'
    >>> settled_status("running", Counts(total=3, succeeded=1, failed=2))
    'completed'
    >>> settled_status("cancelling", Counts(total=3, failed=1, cancelled=2))
    'cancelled'
    """
    if status == "cancelling":
        return "cancelled"
    if counts.succeeded == 0 and counts.failed > 0:
        return "failed"
    return "completed"


def failure_error(
    counts: Counts, index: int, error_type: str | None, error_message: str | None
) -> str:
    """A failed job's ``error``: the first failed item's (`index`) type and message.

    >>> from conveyor.jobs.model import Counts
    >>> failure_error(Counts(total=1, failed=1), 0, "ValueError", "bad input")
    'ValueError: bad input'
    >>> failure_error(Counts(total=3, failed=3), 1, "KeyError", "'id'")
    "all 3 items failed; the first, item 1: KeyError: 'id'"
    """
    parts = [p for p in (error_type, error_message) if p]
    first = ": ".join(parts) if parts else "the item failed with no message"
    if counts.failed == 1:
        return first
    return f"all {counts.failed:,} items failed; the first, item {index}: {first}"


def final_step(status: JobStatus, counts: Counts, error: str | None) -> str:
    """The step an ended job shows: its final state in words.

    >>> from conveyor.jobs.model import Counts
    >>> final_step("completed", Counts(total=10, succeeded=9, failed=1), None)
    'Completed: 9 of 10 items succeeded, 1 failed'
    >>> final_step("failed", Counts(total=1, failed=1), "ValueError: bad input")
    'Failed: ValueError: bad input'
    """
    ran = counts.succeeded + counts.failed
    if status == "failed":
        return f"Failed: {error}" if error else "Failed"
    if status == "cancelled":
        return f"Cancelled: {ran:,} of {counts.total:,} items had run"
    text = f"Completed: {counts.succeeded:,} of {counts.total:,} items succeeded"
    return text + (f", {counts.failed:,} failed" if counts.failed else "")


def failed_by_items(job: Job) -> bool:
    """Whether `job` ended failed by the settle rule (its items failed), not unable to run.

    A job that could not run had its unsettled items cancelled (`Store.fail_job`); one
    failed by its items has none cancelled (a cancel ends a job ``cancelled``).
    """
    c = job.counts
    return job.status == "failed" and c.failed > 0 and c.succeeded == 0 and c.cancelled == 0
