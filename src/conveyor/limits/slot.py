"""`Slot`: the right to make one call, granted by a `Limiter`; and ``limiter.acquire()``.

A slot is how a call talks back to its limiter: `settle` the real cost when the answer says
it, `observe` the answer's rate-limit headers, `release` when done. The limiter books an
admission when it grants it; `mark_sent` dates it later, to when the call actually goes out
(the engine calls it as the attempt starts), so the exact window counts it at the moment the
server can see it: a busy event loop can take milliseconds between the two.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .. import _clock
from ..errors import ConfigError

if TYPE_CHECKING:
    from types import TracebackType

    from ..policy.window import Entry
    from .constraints import Constraint, FromFull, Produced
    from .costs import Cost
    from .limiter import Limiter

__all__ = ["Acquire", "Slot"]


class Slot:
    """The right to make one call, granted by a `Limiter`.

    Use it to tell the limiter what happened: `settle` the real cost when the answer says it,
    `observe` the answer's rate-limit headers. Leaving ``async with limiter.acquire(...)``
    releases it (and a 429 / 503 error with a retry-after hint pauses the whole limiter).
    """

    __slots__ = (
        "_entries",
        "_released",
        "_used",
        "admitted_at",
        "answered_at",
        "cost",
        "granted_at",
        "limiter",
        "settled",
        "units",
    )

    def __init__(
        self,
        limiter: Limiter,
        cost: Cost,
        admitted_at: float,
        entries: list[tuple[Constraint, Entry | Produced | FromFull | None]],
        units: dict[str, float] | None = None,
    ) -> None:
        self.limiter = limiter
        #: The cost the call was admitted with, as given.
        self.cost = cost
        #: The units booked per dimension (``requests`` is 1).
        self.units: dict[str, float] = units if units is not None else {}
        #: What each costed dimension is booked at now (the estimate, then the real cost).
        self.settled: dict[str, float] = {k: v for k, v in self.units.items() if k != "requests"}
        self._used = False  # settled from an answer
        #: When the limiter let the call in; `admitted_at` moves to when it went out.
        self.granted_at = admitted_at
        self.admitted_at = admitted_at
        #: When the answer's first bytes were read (`mark_answered`), or None: then the
        #: release's moment stands for it.
        self.answered_at: float | None = None
        self._entries = entries
        self._released = False

    @property
    def settled_cost(self) -> float:
        """The booked cost of the one costed dimension (tokens), or 0."""
        return next(iter(self.settled.values()), 0.0)

    def settle(self, cost: Cost) -> None:
        """Replace the estimated cost by the real one, refunding or charging the gap.

        `cost` is a number (the one costed dimension, or ``tokens``) or units per dimension,
        such as an answer's usage (`conveyor.limits.costs.usage_costs`).
        """
        if not isinstance(cost, Mapping) and not (
            isinstance(cost, int | float) and cost >= 0 and math.isfinite(cost)
        ):
            msg = f"settle(cost={cost!r}): the real cost must be a number >= 0"
            raise ConfigError(msg)
        limiter = self.limiter
        real = limiter.costs.real(self.settled, cost)
        self._used = True
        limiter._settle(self, real)  # noqa: SLF001 - the slot is the limiter's

    def give_back(self) -> None:
        """The call was never sent: refund its whole cost and release it."""
        self.limiter._settle(self, dict.fromkeys(self.settled, 0.0))  # noqa: SLF001
        self.release(sent=False)

    def observe(self, headers: Mapping[str, str] | Any) -> None:
        """Learn from an answer's rate-limit headers (OpenAI, Anthropic, IETF, X-RateLimit)."""
        self.limiter.observe_headers(headers, sent_at=self.admitted_at)

    def mark_sent(self, now: float) -> None:
        """Date the admission at `now`, when the call goes out (never earlier than granted).

        Moving an admission later only keeps it in its windows longer: the guarantee holds
        for the moment the server sees the call, not the moment it was granted.
        """
        if now <= self.admitted_at:
            return
        self.admitted_at = now
        for constraint, entry in self._entries:
            constraint.redate(entry, now)

    def mark_answered(self, now: float) -> None:
        """Note when the answer began to arrive (its headers), the first time only.

        The limiter dates calls by their answers (`Limiter.answer_date`); the moment the call
        is released comes later by whatever the task did with the answer, which the API did
        not see. The batch runner's aiohttp trace calls this as the answer's headers are read.
        """
        if self.answered_at is None:
            self.answered_at = now

    def release(
        self,
        error: BaseException | None = None,
        latency_s: float | None = None,
        *,
        sent: bool = True,
    ) -> None:
        """End the call: free its concurrency, and learn from how it ended.

        `sent`: False for a slot given back before its call went out (nothing to learn from
        its "answer").
        """
        if self._released:
            return
        self._released = True
        limiter = self.limiter
        sent_at = self.admitted_at  # what an error's headers are read against
        if error is not None and not self._used and self.settled.get("output_tokens"):
            # No answer, no output: the API counts output tokens as they are produced.
            limiter._settle(self, {"output_tokens": 0.0})  # noqa: SLF001
        if sent:
            # How late the request went out after it was let in (buckets learn it).
            limiter.learning.sent(sent_at - self.granted_at)
            answered = self.answered_at if self.answered_at is not None else _clock.now()
            date = limiter.answer_date(self, max(answered, sent_at), ok=error is None)
            if date is not None:
                # Before the release: no queued call may be admitted against the older date.
                self.mark_sent(date)
        limiter._release(self, error, latency_s, sent_at=sent_at)  # noqa: SLF001 - its own


class Acquire:
    """``async with limiter.acquire(cost) as slot``, or ``slot = await limiter.acquire(cost)``."""

    __slots__ = ("_cost", "_limiter", "_slot", "_started", "_units")

    def __init__(self, limiter: Limiter, cost: Cost, units: dict[str, float]) -> None:
        self._limiter = limiter
        self._cost = cost
        self._units = units  # worked out (and checked) by `Limiter.acquire`
        self._slot: Slot | None = None
        self._started = 0.0

    def __await__(self) -> Any:
        return self._limiter._admit(self._cost, self._units).__await__()  # noqa: SLF001

    async def __aenter__(self) -> Slot:
        slot = self._slot = await self._limiter._admit(self._cost, self._units)  # noqa: SLF001
        self._started = _clock.now()
        slot.mark_sent(self._started)
        return slot

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._slot is not None:
            self._slot.release(exc, _clock.now() - self._started)
