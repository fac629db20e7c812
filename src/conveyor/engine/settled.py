"""`Settled`: an item its source hands over already settled, so it costs no call and no slot.

A source may know an item's outcome before any call is made: a line that is no request, a
request the response cache answers. It yields ``Settled(item, value)`` (succeeded) or
``Settled(item, error=exc)`` (failed) instead of the item: the engine settles it at once,
with no attempt, no limiter slot and no latency, and it comes out of the stream (and into the
summary) like any other outcome, so the consumer writes every outcome in one place.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

__all__ = ["Settled"]

T = TypeVar("T")
R = TypeVar("R")


class Settled(Generic[T, R]):
    """An item and its outcome, known without a call: a value, or the `error` it failed with."""

    __slots__ = ("error", "item", "value")

    def __init__(self, item: T, value: R | None = None, error: BaseException | None = None) -> None:
        self.item = item
        self.value = value
        self.error = error

    def __repr__(self) -> str:
        detail: Any = self.value if self.error is None else self.error
        return f"Settled({self.item!r}, {detail!r})"
