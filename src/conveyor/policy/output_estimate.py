"""How many output tokens to reserve for a call before its answer says: learned, purely.

An API that limits output tokens counts what each answer produced; a client must reserve
something before it knows. The call's bound (``max_tokens``) is safe and often five times too
much. So the estimate is a high quantile of the outputs seen lately: most calls reserve a
little more than they use, a few less, and each is settled from its answer. Until `MIN_SEEN`
answers were seen, the estimate is the first guess given, or none (the bound is used).
"""

from __future__ import annotations

import bisect
from collections import deque

__all__ = ["MIN_SEEN", "QUANTILE", "OutputEstimate"]

#: Answers seen before the learned estimate replaces the first guess.
MIN_SEEN = 3
#: The quantile of recent outputs reserved (0.9: one call in ten reserves less than it uses).
QUANTILE = 0.9
#: How many recent outputs are remembered.
KEPT = 256


class OutputEstimate:
    """A high quantile of recent outputs; see the module docstring."""

    __slots__ = ("_recent", "_sorted", "first_guess")

    def __init__(self, *, first_guess: float | None = None) -> None:
        self.first_guess = first_guess
        self._recent: deque[float] = deque()
        self._sorted: list[float] = []

    def observe(self, tokens: float) -> None:
        """Remember one answer's output tokens."""
        if len(self._recent) == KEPT:
            old = self._recent.popleft()
            del self._sorted[bisect.bisect_left(self._sorted, old)]
        self._recent.append(tokens)
        bisect.insort(self._sorted, tokens)

    @property
    def seen(self) -> int:
        """How many outputs are remembered."""
        return len(self._recent)

    def estimate(self) -> float | None:
        """Tokens to reserve for the next call (None: nothing known yet; use the bound)."""
        ranked = self._sorted
        if len(ranked) < MIN_SEEN:
            return self.first_guess
        return ranked[min(int(QUANTILE * len(ranked)), len(ranked) - 1)]
