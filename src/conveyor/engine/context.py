"""What the running attempt holds, reachable from inside the function the engine calls.

`attempt_slot` gives a task the `Slot` its attempt took from a limiter, so that it can settle
the real cost (an LLM answer's ``usage``) or pass on the answer's rate-limit headers, without
threading the slot through its arguments. The engine sets the slots in a context variable just
before each attempt; a context variable follows the call into ``await``s and into the thread a
plain function runs in, and is private to the worker task that set it.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING

from ..errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..limits.protocol import Limit, Ticket

__all__ = ["attempt_slot", "current_slots"]

#: The slots of the attempt running in this context (empty: none, or no limiters).
current_slots: ContextVar[Sequence[Ticket]] = ContextVar("conveyor_attempt_slots", default=())


def attempt_slot(limiter: Limit | None = None) -> Ticket:
    """Return the `Slot` the running attempt holds of `limiter` (of its only limiter if omitted).

    Call it from inside the function given to `conveyor.map` / `conveyor.stream` with
    ``limiters=``; settle the real cost once the answer says it::

        async def extract(text):
            answer = await llm(text)
            conveyor.attempt_slot(openai).settle(answer.usage.total_tokens)
            return answer

    Raises `ConfigError` outside such an attempt, or when `limiter` is not one of its limiters.
    """
    slots = current_slots.get()
    if not slots:
        msg = (
            "attempt_slot() was called outside an attempt that holds a limiter's slot: call it"
            " from the function given to conveyor.map / conveyor.stream with limiters=[...]"
        )
        raise ConfigError(msg)
    if limiter is None:
        if len(slots) == 1:
            return slots[0]
        names = ", ".join(repr(s.limiter.name) for s in slots)
        msg = f"attempt_slot(): this attempt holds slots of {names}; say which: attempt_slot(lim)"
        raise ConfigError(msg)
    for slot in slots:
        if slot.limiter is limiter:
            return slot
    names = ", ".join(repr(s.limiter.name) for s in slots)
    msg = (
        f"attempt_slot({limiter.name!r}): this attempt goes through {names}, not that limiter;"
        " add it to limiters=[...]"
    )
    raise ConfigError(msg)
