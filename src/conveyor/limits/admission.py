"""Who goes now: a limiter's admission, in this process (`LocalAdmission`) or elsewhere.

A `Limiter` is its settings, its cost model and its learning (`conveyor.limits.learning`); the
decision "may this call start now, and if not, when" is delegated to an admission backend, so
that the same limiter can hold its budget in this process (here: a queue, one pump task and
the constraints' arithmetic) or in a store every process shares (`conveyor.limits.redis_admission`:
the same rules run as Lua scripts in Redis). `Admission` is what a backend implements; what
learning changes reaches it through the same object (`LearningListener`).

Callers are served first come, first served: the head of the queue is admitted as soon as every
constraint allows it, and the ones behind it wait their turn. A large request therefore cannot
be starved by a stream of small ones, and no caller spins: one "pump" task sleeps exactly until
the head fits, or until something changes (a slot released, a cost refunded).
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from typing import TYPE_CHECKING, Protocol

from .. import _clock
from .learning import LearningListener
from .slot import Slot

if TYPE_CHECKING:
    from ..errors import QuotaExhausted
    from ..policy.window import Entry
    from .constraints import Constraint, FromFull, Produced, ServerCap
    from .costs import Cost
    from .limiter import Limiter

__all__ = ["LOOKAHEAD", "Admission", "LocalAdmission"]


#: How many callers behind the head may pass it when they fit and it does not (exact mode).
LOOKAHEAD = 32

#: What a dimension's booking changes when a call settles: (its real cost, real - booked).
Change = tuple[float, float]

_Waiter = tuple[dict[str, float], "asyncio.Future[Slot]", float, "Cost"]


class Admission(LearningListener, Protocol):
    """An admission backend: grants slots, books what they cost, frees them."""

    #: Calls admitted here and not yet released.
    in_flight: int

    @property
    def waiting(self) -> int:
        """Callers of this process waiting to be admitted now."""
        ...

    def utilisation(self, now: float) -> dict[str, float]:
        """Per dimension, how much of its budget is in use (`Constraint.utilisation`).

        Empty when the budget is not held in this process.
        """
        ...

    def ready(self, now: float, units: dict[str, float], cost: Cost) -> Slot | None:
        """A slot at once if nothing waits and every constraint allows it now, else None."""
        ...

    async def wait(self, now: float, units: dict[str, float], cost: Cost) -> Slot:
        """Wait in turn for every constraint to allow `units`; the slot."""
        ...

    def settle(self, slot: Slot, changes: dict[str, Change]) -> None:
        """Book `slot`'s real cost in the dimensions that `changes` names."""
        ...

    def released(self, slot: Slot) -> None:
        """`slot`'s call ended: its concurrency is free (learning is the limiter's)."""
        ...


class LocalAdmission:
    """Admission in this process: the constraints' arithmetic, a queue and one pump task."""

    __slots__ = (
        "_constraints",
        "_learning",
        "_limiter",
        "_pump_task",
        "_queue",
        "_wakeup",
        "horizon_s",
        "in_flight",
    )

    def __init__(self, limiter: Limiter, constraints: list[Constraint]) -> None:
        self._limiter = limiter
        self._learning = limiter.learning
        self._constraints = constraints
        config = limiter.config
        #: How long the head of the queue may be passed by cheaper callers (`_backfill`).
        self.horizon_s = config.window_s if config.window_s is not None else config.bucket_s
        self.in_flight = 0
        self._queue: deque[_Waiter] = deque()
        self._pump_task: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Future[None] | None = None

    def _wait_s(self, now: float, units: dict[str, float]) -> float:
        learning = self._learning
        wait = learning.paused_until - now
        limit = self._limiter.concurrency_limit
        if limit is not None and self.in_flight >= limit:
            return math.inf  # until a slot is released
        if learning.breaker is not None:
            wait = max(wait, 0.0)  # the breaker fails fast in `admit`, it does not queue
        for c in self._constraints:
            wait = max(wait, c.wait_s(now, units[c.unit]))
        for dim, cap in learning.server_caps.items():
            wait = max(wait, cap.wait_s(now, units.get(dim, 0.0)))
        return max(wait, 0.0)

    def _commit(self, now: float, units: dict[str, float], cost: Cost) -> Slot:
        limiter = self._limiter
        self._learning.started(now)
        entries: list[tuple[Constraint, Entry | Produced | FromFull | None]] = [
            (c, c.admit(now, units[c.unit])) for c in self._constraints
        ]
        caps = self._learning.server_caps
        for dim, cap in list(caps.items()):
            if now >= cap.until:
                del caps[dim]
            else:
                cap.remaining -= units.get(dim, 0.0)
        self.in_flight += 1
        limiter.admitted += 1
        return Slot(limiter, cost, now, entries, units)

    @property
    def waiting(self) -> int:
        """Callers waiting in the queue now (one that gave up leaves at its turn)."""
        return sum(1 for _, future, _, _ in self._queue if not future.done())

    def utilisation(self, now: float) -> dict[str, float]:
        """Per dimension, the highest utilisation of its constraints at `now`."""
        used: dict[str, float] = {}
        for c in self._constraints:
            used[c.unit] = max(used.get(c.unit, 0.0), c.utilisation(now))
        return used

    def ready(self, now: float, units: dict[str, float], cost: Cost) -> Slot | None:
        """A slot at once if nothing waits and every constraint allows it now, else None."""
        if not self._queue and self._wait_s(now, units) <= 0:
            return self._commit(now, units, cost)
        return None

    async def wait(self, now: float, units: dict[str, float], cost: Cost) -> Slot:
        """Queue behind the callers already waiting; the pump grants the slot in turn."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Slot] = loop.create_future()
        self._queue.append((units, future, now, cost))
        if self._pump_task is None or self._pump_task.done():
            name = f"conveyor-limiter-{self._limiter.name}"
            self._pump_task = loop.create_task(self._pump(), name=name)
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                # Granted just as we were cancelled: nothing was sent, give it all back.
                future.result().give_back()
            raise

    async def _pump(self) -> None:
        """Admit the head of the queue whenever it fits; sleep exactly until it might."""
        loop = asyncio.get_running_loop()
        queue = self._queue
        costs = self._limiter.costs
        while queue:
            units, future, queued_at, cost = queue[0]
            if future.done():  # its caller gave up
                queue.popleft()
                continue
            costs.refresh(units, cost)  # what was learned while it waited
            now = loop.time()
            wait = self._wait_s(now, units)
            if wait <= 0:
                queue.popleft()
                future.set_result(self._commit(now, units, cost))
                continue
            horizon = self.horizon_s
            if horizon is not None and now - queued_at < horizon:
                wait = min(wait, self._backfill(now))
                if wait <= 0:
                    continue
            wakeup = self._wakeup = loop.create_future()
            timer = loop.call_at(now + wait, _wake, wakeup) if math.isfinite(wait) else None
            try:
                await wakeup
            finally:
                if timer is not None:
                    timer.cancel()
                self._wakeup = None

    def _backfill(self, now: float) -> float:
        """Let a cheaper caller behind the head go if it fits now; else say when one might.

        When several dimensions bind, strict first-come-first-served wastes budget: a large
        call waiting for tokens holds back small ones that the requests budget still has room
        for. So the first `LOOKAHEAD` callers may pass the head while it has waited less than
        one window (or one bucket's worth). Each one that passes uses little of what the head
        waits for, and after that the head goes first again: no caller waits forever.
        """
        best = math.inf
        for position in range(1, min(len(self._queue), LOOKAHEAD + 1)):
            units, future, _, cost = self._queue[position]
            if future.done():
                continue
            self._limiter.costs.refresh(units, cost)
            wait = self._wait_s(now, units)
            if wait <= 0:
                del self._queue[position]
                future.set_result(self._commit(now, units, cost))
                return 0.0
            best = min(best, wait)
        return best

    # -- a call's end, and what learning changed ------------------------------------------

    def settle(self, slot: Slot, changes: dict[str, Change]) -> None:
        """Correct each constraint of a changed dimension; a refund may let the head in."""
        refund = False
        now = _clock.now()
        for c, entry in slot._entries:  # noqa: SLF001 - the slot this admission granted
            change = changes.get(c.unit)
            if change is not None:
                c.settle(entry, change[0], change[1], now)
                refund = refund or change[1] < 0
        if refund:
            self.changed()

    def released(self, slot: Slot) -> None:
        """A call ended: its concurrency slot is free."""
        del slot  # its bookings stay: they leave the windows and buckets with time
        self.in_flight -= 1
        self.changed()

    def changed(self) -> None:
        """Something admission depends on changed: the pump looks again."""
        wakeup = self._wakeup
        if wakeup is not None:
            _wake(wakeup)

    def halted(self, error: QuotaExhausted) -> None:
        """The quota is exhausted: every caller waiting gets `error` now."""
        while self._queue:
            _, future, _, _ = self._queue.popleft()
            if not future.done():
                future.set_exception(error)
        self.changed()

    def paused(self, seconds: float) -> None:
        """Learning's pause is read from it directly (`Learning.paused_until`)."""

    def capped(self, dim: str, cap: ServerCap) -> None:
        """Learning's server caps are read from it directly (`Learning.server_caps`)."""

    def adopted(self, constraint: Constraint, limit: float) -> None:
        """The constraint already holds the adopted limit: nothing more to do here."""


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
