"""The protocol between the engine and a limit: admit, observe, release.

Everything that runs calls (`conveyor run`, the jobs, `limit_openai`) talks to limits through
these verbs only, so a new kind of limit never touches the runner:

- ``admit(cost)`` waits for the right to make one call costing `cost` (a number, or units per
  dimension: `conveyor.limits.costs`) and returns a ticket (`Ticket`); ``acquire(cost)`` is
  the same as an ``async with`` block;
- the ticket is where the call's facts are written, by whoever makes the call: when it went
  out (``mark_sent``), when its answer began (``mark_answered``), the answer's rate-limit
  headers (``observe``), what it really cost (``settle``);
- ``release(error, latency_s)`` ends the call and hands what it taught to the limit's
  learning, in one place; ``give_back()`` ends a call that was never sent.

`Limiter` (in-process) and `RedisLimiter` (shared through Redis) implement it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from collections.abc import Awaitable, Mapping
    from contextlib import AbstractAsyncContextManager

    from .costs import Cost

__all__ = ["Limit", "Ticket"]


@runtime_checkable
class Ticket(Protocol):
    """The right to make one call, and where its facts are written."""

    @property
    def limiter(self) -> Limit:
        """The limit that granted it."""
        ...

    @property
    def settled(self) -> Mapping[str, float]:
        """What each costed dimension is booked at now."""
        ...

    def mark_sent(self, now: float) -> None:
        """The call went out at `now` (its admission counts from then)."""
        ...

    def mark_answered(self, now: float) -> None:
        """The answer began to arrive at `now`."""
        ...

    def observe(self, headers: Any) -> None:
        """The answer's rate-limit headers."""
        ...

    def settle(self, cost: Cost) -> None:
        """What the call really cost (a number, or units per dimension)."""
        ...

    def release(self, error: BaseException | None = None, latency_s: float | None = None) -> None:
        """End the call; the limit learns from how it ended (a call never sent: `give_back`)."""
        ...

    def give_back(self) -> None:
        """End a call that was never sent: nothing is charged, nothing learned."""
        ...


@runtime_checkable
class Limit(Protocol):
    """What the engine needs of a limit (see the module docstring)."""

    name: str

    @property
    def limits_tokens(self) -> bool:
        """Whether calls must say their cost (a dimension other than requests is limited)."""
        ...

    def admit(self, cost: Cost = 1.0) -> Awaitable[Ticket]:
        """Wait for the right to make one call costing `cost`."""
        ...

    def acquire(self, cost: Cost = 1.0) -> AbstractAsyncContextManager[Any]:
        """``async with limit.acquire(cost) as ticket``: admit, then release on leaving."""
        ...

    def learn_from_error(self, error: BaseException, *, sent_at: float | None = None) -> None:
        """Learn from an error raised outside a call (e.g. `RetryAfter` from a task)."""
        ...
