"""What the engine tells listeners while it runs, through one hook: ``on_event(event)``.

The hook is called synchronously, in the event loop, for every event; keep it quick (update a
counter, put on a queue). If it raises, the error is logged and the run goes on: progress is
never worth losing work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .report import Outcome, Summary

__all__ = ["Event", "ItemFinished", "ItemRetrying", "ItemStarted", "RunFinished"]


@dataclass(frozen=True, slots=True)
class ItemStarted:
    """An attempt at an item started (`attempt` is 1 for the first)."""

    index: int
    item: Any
    attempt: int


@dataclass(frozen=True, slots=True)
class ItemRetrying:
    """An attempt failed and the item will be retried after `delay_s`, for `reason`."""

    index: int
    item: Any
    attempt: int
    delay_s: float
    error: BaseException
    reason: str


@dataclass(frozen=True, slots=True)
class ItemFinished:
    """An item settled; this is its one and only outcome."""

    outcome: Outcome[Any, Any]


@dataclass(frozen=True, slots=True)
class RunFinished:
    """The run ended (done, failed fast, or cancelled); `summary` counts what settled."""

    summary: Summary


Event = ItemStarted | ItemRetrying | ItemFinished | RunFinished
