"""`JobBudget`: a budgeted job's spend, as the one worker running it counts it.

With a spend budget (the job's ``max_cost_usd``, for the http tasks), an item starts only if
the spend so far, plus the most the items in flight may cost, plus the most it may cost (its
prompt and all of ``max_tokens``, at the price table's prices) stays within the budget. The
spend so far is summed from the job's stored answers when the run starts (`load`, so it
survives a restart), then grows with each answer (`add`). An item that would pass the budget
waits while items are in flight (their answers usually cost less than their bounds: the
waiting is `conveyor.limits.budget.BudgetHolds`'s); with none in flight, `admit` refuses it,
saying why, and the run stops admitting items (`conveyor.jobs.jobrun`). The store gives a
budgeted job to one worker at a time (`Store.claim`), so this count is the only one. The rule
and its reasons are `conveyor.limits.budget.SpendBudget`'s, the one ``conveyor run`` keeps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..limits.budget import SpendBudget

if TYPE_CHECKING:
    from collections.abc import Callable

    from .app import Task
    from .model import ClaimedItem
    from .store import Store

__all__ = ["JobBudget"]


class JobBudget:
    """The spend of one budgeted job on this worker; see the module docstring.

    Args:
        job_id: the job.
        max_usd: its budget (``options.max_cost_usd``).
        task: its task, which prices requests (``bound_usd``) and answers (``spent_usd``).
        store: where its stored answers are read (`load`).
    """

    def __init__(self, job_id: str, max_usd: float, task: Task, store: Store) -> None:
        assert task.bound_usd is not None
        assert task.spent_usd is not None
        self._job_id = job_id
        self.max_usd = max_usd
        self._bound_usd = task.bound_usd
        self._spent_usd = task.spent_usd
        self._store = store
        #: What the job's answers cost so far.
        self.spent = 0.0
        self._budget = SpendBudget(
            max_usd, spent_usd=lambda: self.spent, option="max_cost_usd", items="items"
        )

    async def load(self) -> None:
        """Set `spent` to the cost of the job's stored answers (read a page at a time)."""
        total, after, page_size = 0.0, -1, 1000
        while True:
            page = await self._store.items(
                self._job_id, state="succeeded", after=after, limit=page_size
            )
            total += sum(self.cost_of(i.result, i.input) for i in page)
            if len(page) < page_size:
                self.spent = total
                return
            after = page[-1].index

    async def admit(
        self, item: ClaimedItem, item_input: Any, *, stopped: Callable[[], bool]
    ) -> str | None:
        """Hold the budget `item` (whose input, parsed, is `item_input`) may use, or wait.

        None once held; ``""`` if `stopped()` became true while it waited; else why it cannot
        fit (the run then stops admitting items).
        """
        try:
            model, bound = self._bound_usd(item_input)
        except Exception:
            return None  # an item the task refuses fails in the task, sending nothing
        who = f"item {item.index}"
        return await self._budget.admit(item.index, who, model, bound, stopped=stopped)

    def cost_of(self, result: Any, item_input: Any) -> float:
        """What an answer cost; with no price for it, the most its request could cost."""
        cost = self._spent_usd(result)
        if cost is None:
            try:
                cost = self._bound_usd(item_input)[1]
            except Exception:
                cost = None
        return cost or 0.0

    def add(self, result: Any, item_input: Any) -> None:
        """Count an answer's cost as spent."""
        self.spent += self.cost_of(result, item_input)

    @property
    def held_usd(self) -> float:
        """The bounds held by the items in flight, together."""
        return self._budget.held_usd

    def release(self, index: int) -> None:
        """Let go of what item `index` held (it settled)."""
        self._budget.release(index)

    def wake(self) -> None:
        """Wake an admission waiting for room (the run stops)."""
        self._budget.wake()
