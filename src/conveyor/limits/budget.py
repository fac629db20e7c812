"""The part of a spend budget held by calls in flight, shared by `conveyor run` and the jobs.

Before a call starts, the most it may cost (its prompt and all of ``max_tokens``, at the price
table's prices: its *bound*) is held; when it settles, the hold is let go and what it really
cost counts as spent. A call starts only if what was spent, plus what is held, plus its own
bound stays within the budget.

A call that does not fit waits while others are in flight: their answers usually cost less
than their bounds, so room comes back, and near the budget the run narrows to what fits. It
is refused (and the run halts) only when nothing in flight could free any. A call held while
it waits for its retry is in flight too: the engine's worker asking for the next call stops
waiting for it when a retry falls due (`conveyor.engine.source`), so it runs the retry, whose
settling frees the room this wait is for, even at concurrency 1.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable

__all__ = ["BudgetHolds", "Refusal", "SpendBudget"]

#: Why a call may not start, and whether that is final (no price: waiting cannot help).
Refusal = tuple[str, bool]


class BudgetHolds:
    """The bounds held by calls in flight, by key; see the module docstring."""

    __slots__ = ("_freed", "_held", "held_usd")

    def __init__(self) -> None:
        self._held: dict[Hashable, float] = {}
        self.held_usd = 0.0
        self._freed = asyncio.Event()

    def __len__(self) -> int:
        return len(self._held)

    def hold(self, key: Hashable, bound_usd: float) -> None:
        """Hold `bound_usd` for the call `key`."""
        self._held[key] = bound_usd
        self.held_usd += bound_usd

    def release(self, key: Hashable) -> None:
        """The call `key` settled: let its hold go (a waiting admission looks again)."""
        if self._held:
            self.held_usd -= self._held.pop(key, 0.0)
            if not self._held:
                self.held_usd = 0.0  # no rounding left over once nothing is held
            self._freed.set()

    def wake(self) -> None:
        """Make a waiting admission look again (the run is stopping)."""
        self._freed.set()

    async def admit(
        self, try_hold: Callable[[], Refusal | None], *, stopped: Callable[[], bool]
    ) -> str | None:
        """Hold a call's bound, waiting while calls in flight may free room.

        `try_hold` holds the bound if it fits (None) or says why not. Returns None once held,
        ``""`` if `stopped()` became true while it waited, or the refusal's reason (halt).
        """
        while True:
            refused = try_hold()
            if refused is None:
                return None
            why, final = refused
            if final or not self._held:
                return why
            self._freed.clear()
            await self._freed.wait()
            if stopped():
                return ""


class SpendBudget:
    """A spend budget: what was spent, the bounds held in flight, and the rule that admits a call.

    One class for every path that keeps a budget (``conveyor run --max-cost``, a job's
    ``max_cost_usd``): a call starts only if ``spent + held + its bound <= max_usd``; one with
    no price cannot be kept within any budget, and is refused for good. Each path names its
    own option and items in the reasons, which are otherwise worded once, here.

    Args:
        max_usd: the budget, in US dollars.
        spent_usd: what was spent so far (read at every admission: the answers' costs are
            counted where they land).
        option: how the user set the budget (``--max-cost``, ``max_cost_usd``).
        items: what the calls are called (``requests``, ``items``).
        resume: said after "the ... not started stay pending" (how to resume), or "".
        no_price_fix: said after a refusal for a missing price (how to add one), or "".
    """

    __slots__ = ("_holds", "_spent", "_words", "max_usd")

    def __init__(
        self,
        max_usd: float,
        *,
        spent_usd: Callable[[], float],
        option: str,
        items: str,
        resume: str = "",
        no_price_fix: str = "",
    ) -> None:
        self.max_usd = max_usd
        self._spent = spent_usd
        self._words = (option, items, resume, no_price_fix)
        self._holds = BudgetHolds()

    @property
    def held_usd(self) -> float:
        """The bounds held by the calls in flight, together."""
        return self._holds.held_usd

    def reserve(
        self, key: Hashable, who: str, model: str | None, bound_usd: float | None
    ) -> Refusal | None:
        """Hold `bound_usd` for the call `key` if it fits: None, or why not and if for good.

        `who` names the call in the reason (``request req-3``, ``item 3``).
        """
        budget = self.max_usd
        option, items, resume, no_price_fix = self._words
        if bound_usd is None:
            why = (
                f"budget: no price for the model {model!r} of {who}, so the budget of"
                f" ${budget:g} ({option}) cannot be kept; the {items} not started stay"
                f" pending{no_price_fix}"
            )
            return why, True
        spent = self._spent()
        if spent + self._holds.held_usd + bound_usd > budget:
            why = (
                f"budget reached: ${spent:.4f} spent of ${budget:g} ({option}), and {who} may"
                f" cost up to ${bound_usd:.4f}; the {items} not started stay pending{resume}"
            )
            return why, False
        self._holds.hold(key, bound_usd)
        return None

    async def admit(
        self,
        key: Hashable,
        who: str,
        model: str | None,
        bound_usd: float | None,
        *,
        stopped: Callable[[], bool],
    ) -> str | None:
        """Hold the call's bound, waiting while calls in flight may free room (`BudgetHolds`).

        None once held; ``""`` if `stopped()` became true while it waited; else why it cannot
        fit (the run then stops admitting).
        """
        return await self._holds.admit(
            lambda: self.reserve(key, who, model, bound_usd), stopped=stopped
        )

    def release(self, key: Hashable) -> None:
        """The call `key` settled: let its hold go."""
        self._holds.release(key)

    def wake(self) -> None:
        """Wake an admission waiting for room (the run stops)."""
        self._holds.wake()
