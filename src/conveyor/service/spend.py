"""Tokens and cost of LLM jobs, summed from their stored results when the job is read.

Store-agnostic: nothing is added to the stores (SQLite, memory, PostgreSQL alike). The http
task stores each answer (``{"status_code", "headers", "body"}``); the ``usage`` of the bodies
of a job's succeeded items, priced by the price table (``conveyor/llm/prices.toml``), is the
job's spend. A succeeded item never changes, so a job is read again only when it has more of
them, and while it runs at most every `RESCAN_S` seconds (a read of every succeeded item,
a page at a time): the figures of a running job may lag that much; those of a finished job
are exact. Only jobs of the connections' http tasks are read; the figures are kept for the
`MAX_JOBS` most recently read jobs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import _clock
from ..llm.pricing import PriceTable, usage_of

if TYPE_CHECKING:
    from collections.abc import Collection

    from ..jobs.client import Jobs
    from ..jobs.model import Job

__all__ = ["JobSpend"]

#: A running job's results are summed again at most this often, in seconds.
RESCAN_S = 2.0
#: Jobs whose figures are kept (the least recently read are dropped, and summed again if read).
MAX_JOBS = 10_000


@dataclass(slots=True)
class _Tally:
    succeeded: int = -1  # the job's succeeded count when last summed (-1: never)
    scanned_at: float = -math.inf
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    unpriced: int = 0  # answers with usage whose model has no price
    ran: int = 0  # the job's succeeded and failed items when last summed
    total: int = 0  # the job's items

    def figures(self) -> dict[str, Any]:
        # Like the runner's (`BatchTally.projected_cost_usd`): the mean cost per settled item
        # (succeeded or failed: cancelled ones never ran) times the items; None before any.
        projected = None
        if self.ran > 0:
            projected = round(self.cost_usd / self.ran * self.total, 6)
        return {
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "cost_usd": round(self.cost_usd, 6),
            "unpriced_answers": self.unpriced,
            "projected_cost_usd": projected,
        }


class JobSpend:
    """The tokens in and out and the cost of the LLM jobs read through the service."""

    def __init__(
        self, jobs: Jobs, tasks: Collection[str], prices: PriceTable | None = None
    ) -> None:
        self._jobs = jobs
        self._tasks = tasks
        self._prices = prices
        self._tallies: dict[str, _Tally] = {}

    def figures(self, job: Job) -> dict[str, Any] | None:
        """The job's figures as last summed (None: not an LLM job, or not summed yet)."""
        tally = self._tallies.get(job.id)
        return None if tally is None else tally.figures()

    async def refresh(self, job: Job) -> dict[str, Any] | None:
        """Sum the job's results again if it has new succeeded items; its figures."""
        if job.task not in self._tasks:
            return None
        tally = self._tallies.pop(job.id, None) or _Tally()
        self._tallies[job.id] = tally  # the most recently read last
        while len(self._tallies) > MAX_JOBS:
            del self._tallies[next(iter(self._tallies))]
        succeeded = job.counts.succeeded
        now = _clock.now()
        due = job.done or now - tally.scanned_at >= RESCAN_S
        if succeeded != tally.succeeded and due:
            await self._sum(job.id, tally)
            tally.succeeded, tally.scanned_at = succeeded, now
            tally.ran, tally.total = job.counts.succeeded + job.counts.failed, job.counts.total
        return tally.figures()

    async def _sum(self, job_id: str, tally: _Tally) -> None:
        if self._prices is None:
            self._prices = PriceTable.default()
        tokens_in = tokens_out = unpriced = 0
        cost = 0.0
        async for item in self._jobs.results(job_id, state="succeeded"):
            result = item.result
            usage = usage_of(result.get("body")) if isinstance(result, dict) else None
            if usage is None:
                continue
            tokens_in += usage.tokens_in
            tokens_out += usage.tokens_out
            priced = self._prices.answer_cost_usd(usage)
            if priced is None:
                unpriced += 1
            else:
                cost += priced
        tally.tokens_in, tally.tokens_out, tally.cost_usd = tokens_in, tokens_out, cost
        tally.unpriced = unpriced
