"""`Outage`: how a worker rides out a store it cannot reach, for as long as it lasts.

Every store call of a worker that can fail with `StoreUnavailable` goes through one `Outage`
(`call`), or reports to it (`failed` / `succeeded`): the first failure logs the outage once,
with what failed; the calls are retried, waiting 0.1 s, doubling, to at most 5 s between
tries; the first success after it logs the end and how long it lasted. Meanwhile the worker
keeps what it could not write (finished results stay buffered; claims pause, so the buffer
is bounded by what was claimed) and carries on when the store is back.

`back_at` tells when the store last came back: a worker that was cut off does not re-queue
the items of other workers until a whole lease has passed since (`Worker.may_requeue`). The
other workers were cut off too, and their leases lapsed only because they could not renew
them; they get a lease's time to renew before their items are taken from them (which would
run those items twice).
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import TYPE_CHECKING, TypeVar

from .. import _clock
from .errors import StoreUnavailable

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ["FIRST_WAIT_S", "MAX_WAIT_S", "Outage", "outage_wait_s"]

logger = logging.getLogger("conveyor.jobs")
T = TypeVar("T")

#: The wait before the first retry of a store call, seconds (then doubling).
FIRST_WAIT_S = 0.1
#: The longest wait between two tries, seconds: a store that is back is seen this soon.
MAX_WAIT_S = 5.0


def outage_wait_s(age_s: float) -> float:
    """The wait before the next try of an outage `age_s` old: its age, within the bounds.

    >>> [outage_wait_s(a) for a in (0.0, 0.1, 0.2, 0.4, 3.2, 60.0)]
    [0.1, 0.1, 0.2, 0.4, 3.2, 5.0]
    """
    return min(MAX_WAIT_S, max(FIRST_WAIT_S, age_s))


class Outage:
    """The store's outages as one worker sees them; see the module docstring.

    Args:
        who: names the worker in the log lines.
    """

    def __init__(self, who: str) -> None:
        self.who = who
        #: When the outage began (`conveyor._clock.now`), or None while the store answers.
        self.down_since: float | None = None
        #: When the store last came back after an outage (-inf: never down).
        self.back_at = -math.inf
        #: Outages seen, over the worker's life.
        self.count = 0

    @property
    def down(self) -> bool:
        """Whether the last store call failed for want of the store."""
        return self.down_since is not None

    def failed(self, exc: StoreUnavailable, doing: str) -> float:
        """Note a failed call (logged once per outage); return the wait before the next try.

        The wait is the outage's age so far, from `FIRST_WAIT_S` to `MAX_WAIT_S`: a caller
        that retries after each wait waits 0.1 s, 0.1 s, 0.2 s, 0.4 s... (doubling), and that
        holds however many of the worker's tasks (writer, heartbeat, claims) retry at once.
        """
        now = _clock.now()
        if self.down_since is None:
            self.down_since = now
            self.count += 1
            logger.warning(
                "conveyor worker %s: the store is unavailable while %s: %s; finished results"
                " are kept in memory and the calls retried (every %g s at most) until it is back",
                self.who,
                doing,
                exc,
                MAX_WAIT_S,
            )
        return outage_wait_s(now - self.down_since)

    def succeeded(self) -> None:
        """Note a call that went through: an outage in progress has ended (logged)."""
        if self.down_since is None:
            return
        now = _clock.now()
        logger.warning(
            "conveyor worker %s: the store is back after %.1f s; carrying on",
            self.who,
            now - self.down_since,
        )
        self.down_since = None
        self.back_at = now

    async def call(
        self,
        fn: Callable[[], Awaitable[T]],
        *,
        doing: str,
        give_up: Callable[[], bool] = lambda: False,
        writes: bool = True,
    ) -> T:
        """``await fn()``, again and again while the store is unavailable.

        `give_up` is asked after each failure: when it says so, the last `StoreUnavailable`
        is raised (a worker told to stop does not wait for the store forever). Any other
        error is raised at once. Only a call that `writes` ends an outage once it works (a
        full disk still answers reads).
        """
        while True:
            try:
                result = await fn()
            except StoreUnavailable as exc:
                wait_s = self.failed(exc, doing)
                if give_up():
                    raise
                await asyncio.sleep(wait_s)
                continue
            if writes:
                self.succeeded()
            return result
