"""A wrapped SDK call's slots: taken before it is sent, told what it did, released.

Admission waits, so `admit` is a coroutine; the rest is synchronous and runs on the limiters'
loop: an async client's own, or the `Bridge`'s for a sync client (`on_loop`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from .. import _clock
from ..limits.costs import usage_costs
from .bridge import Bridge

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from ..limits.limiter import Limiter
    from ..limits.slot import Slot

    #: Runs a function on the limiters' loop: directly (async clients), or on the bridge.
    OnLoop = Callable[..., Any]

__all__ = [
    "admit",
    "bridged",
    "direct",
    "give_back",
    "opened",
    "rate_limit_headers",
    "real_cost",
    "settle_and_release",
    "usage_in",
]

T = TypeVar("T")


async def admit(limiters: Sequence[Limiter], cost: dict[str, float]) -> list[Slot]:
    """Take a slot of each limiter, in order, as ``async with limiter.acquire`` does.

    If one refuses (halted, its circuit open, cancelled), the slots taken are given back whole:
    the call was not sent.
    """
    slots: list[Slot] = []
    try:
        for limiter in limiters:
            slot = await limiter.admit(cost)
            slot.mark_sent(_clock.now())
            slots.append(slot)
    except BaseException:
        for slot in reversed(slots):
            slot.give_back()
        raise
    return slots


async def give_back(slots: Sequence[Slot]) -> None:
    """The call was never sent: refund each slot's whole cost and release it."""
    for slot in reversed(slots):
        slot.give_back()


def settle_and_release(
    slots: Sequence[Slot],
    *,
    error: BaseException | None = None,
    headers: Any = None,
    real: dict[str, float] | None = None,
) -> None:
    """Show each slot the answer's rate-limit `headers`, settle it at `real`; release them all.

    A token limiter is settled with what the call really used (`real_cost`); a failed call is
    released with its `error`, which the limiter learns from (a pause, a halt).
    """
    try:
        for slot in slots:
            if headers is not None:
                slot.observe(headers)
            if real is not None and slot.limiter.limits_tokens:
                slot.settle(real)
    finally:
        now = _clock.now()
        for slot in reversed(slots):
            slot.release(error, now - slot.admitted_at)


def opened(slots: Sequence[Slot], headers: Any) -> None:
    """A stream began: note when its answer's headers came, and what they say of the limits."""
    now = _clock.now()
    for slot in slots:
        slot.mark_answered(now)
        if headers is not None:
            slot.observe(headers)


def rate_limit_headers(headers: Any) -> Any:
    """`headers` if they carry rate-limit figures (OpenAI's, Anthropic's), else None."""
    if headers is None or not any("ratelimit" in str(name).lower() for name in headers):
        return None
    return headers


def usage_in(answer: Any) -> Any:
    """An answer's ``usage`` (a dict's, or an SDK object's), or None."""
    if isinstance(answer, Mapping):
        return answer.get("usage")
    return getattr(answer, "usage", None)


def real_cost(usage: Any, cost: dict[str, float], *, refund: bool) -> dict[str, float] | None:
    """What a call used per dimension, from its `usage`; None when the answer says nothing.

    Input and output tokens are separate budgets, counted as used (`usage_costs`: Anthropic's
    cache creation counts as input, its cache reads toward neither). ``tokens`` is settled
    below the estimate `cost` only with `refund`: OpenAI charges ``max_tokens`` up front.
    """
    real = usage_costs(usage)
    if real is not None and not refund:
        real["tokens"] = max(real["tokens"], cost.get("tokens", 0.0))
    return real


def direct(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run `function` here: an async client's calls are on the limiters' loop already."""
    return function(*args, **kwargs)


async def _call(function: Callable[..., T], args: Any, kwargs: Any) -> T:
    return function(*args, **kwargs)


def bridged(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run `function` on the bridge's loop, where a sync client's limiters live."""
    return Bridge.run(_call(function, args, kwargs))
