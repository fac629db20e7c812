"""Items waiting to be retried, and the decision to retry one (the runner's retry side).

A failed attempt that the policy retries does not keep its worker: it waits in a heap keyed by
the time it becomes due (ties broken by arrival), and any free worker takes due retries before
new items. The runner reads the heap's head directly in its hot loop (``heap[0][0]`` is the next
due time), so the heap is a plain list.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import _clock
from ..errors import DeadlineExceeded
from ..policy.retry import Decision, decide

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ..policy.retry import Retry

__all__ = ["RetryQueue", "Waiting", "note", "retry_decision"]

_NOTE = "conveyor: "


@dataclass(slots=True, eq=False)
class Waiting:
    """An item waiting to be retried."""

    index: int
    item: Any
    attempts: int
    first_start: float
    error: BaseException


class RetryQueue:
    """Retries by due time; `heap` is ``[(due, seq, Waiting), ...]``, a min-heap."""

    __slots__ = ("_seq", "heap")

    def __init__(self) -> None:
        self.heap: list[tuple[float, int, Waiting]] = []
        self._seq = 0

    def push(self, due: float, waiting: Waiting) -> None:
        """Queue `waiting` to become due at `due`."""
        self._seq += 1
        heapq.heappush(self.heap, (due, self._seq, waiting))

    def pop(self) -> Waiting:
        """Take the retry due first."""
        return heapq.heappop(self.heap)[2]

    def drain(self) -> Iterator[Waiting]:
        """Take every retry still waiting, the earliest due first (at shutdown)."""
        while self.heap:
            yield self.pop()


def retry_decision(
    policy: Retry, *, attempt: int, exc: BaseException, elapsed_s: float
) -> Decision:
    """Whether to retry after attempt number `attempt` failed with `exc`, and when.

    A policy that raises (its predicate, or its jitter source) fails the item with its own error,
    and the decision says why it was not retried.
    """
    if isinstance(exc, DeadlineExceeded) and exc.attempts == 0:
        exc.attempts = attempt
        exc.args = (str(DeadlineExceeded(exc.deadline_s, attempt)),)
    try:
        return decide(
            policy,
            attempt=attempt,
            exc=exc,
            elapsed_s=elapsed_s,
            now_wall_s=_clock.wall(),
            u=policy.rng.random(),
        )
    except Exception as policy_error:
        reason = f"the retry policy raised {policy_error!r}"
        return Decision(retry=False, delay_s=0.0, reason=reason)


def note(exc: BaseException, text: str) -> None:
    """Add a note once: a shared exception instance must not collect one per item."""
    notes = getattr(exc, "__notes__", ())
    if not any(isinstance(n, str) and n.startswith(_NOTE) for n in notes):
        exc.add_note(_NOTE + text)
