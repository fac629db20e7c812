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

__all__ = ["BudgetHolds", "Refusal"]

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
