"""How one attempt is made: through the limiters, under the timeout and the item's deadline.

The runner decides *which* item runs and settles it; this module only makes the call. It knows
the three things that can bound an attempt: the limiters' slots (taken before the call, given
back after it with what was learned), the per-attempt timeout (fixed, or "auto": following the
observed latency), and the item's deadline across attempts.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from ..errors import AttemptTimeout, DeadlineExceeded
from ..policy.adaptive import AutoTimeout
from .threads import ThreadCaller

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from ..limits.costs import Cost
    from ..limits.protocol import Limit, Ticket
    from ..policy.retry import Retry

__all__ = ["Attempts", "release"]


def release(slots: list[Ticket], error: BaseException | None, latency_s: float | None) -> None:
    """Give the slots back, telling each limiter how the call ended."""
    for slot in slots:
        slot.release(error, latency_s)


class Attempts:
    """Makes attempts at items: the call itself, bounded as the policy says."""

    __slots__ = (
        "_auto",
        "_cost",
        "_limiters",
        "_live",
        "_loop",
        "_policy",
        "_sweep",
        "_warmup",
        "call",
        "threads",
    )

    def __init__(
        self,
        fn: Callable[[Any], Any],
        *,
        is_async: bool,
        policy: Retry,
        concurrency: int,
        limiters: Sequence[Limit],
        cost: Callable[[Any], Cost] | None,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._policy = policy
        self._limiters = tuple(limiters)
        self._cost = cost
        self.threads: ThreadCaller | None = None
        self.call: Callable[[Any], Awaitable[Any]]
        if is_async:
            self.call = fn
        else:
            self.threads = ThreadCaller(fn, max_workers=concurrency)
            self.call = self.threads
        self._auto = AutoTimeout() if policy.timeout_s == "auto" else None
        # Attempts started before the automatic timeout was known, and when each started.
        self._warmup: dict[asyncio.Timeout, float] = {}
        # Under a fixed time limit (no deadline, no thread), the timers of the attempts in
        # flight and when each runs out, in the order they started, which is the order they
        # run out; `_sweep` wakes at the first's time (see `_watched_call`).
        self._live: dict[asyncio.Timeout, float] = {}
        self._sweep: asyncio.TimerHandle | None = None

    @property
    def bounded(self) -> bool:
        """Whether attempts need a timer (a timeout or a deadline)."""
        return self._policy.timeout_s is not None or self._policy.deadline_s is not None

    @property
    def limited(self) -> bool:
        """Whether attempts go through limiters."""
        return bool(self._limiters)

    @property
    def auto_timeout(self) -> AutoTimeout | None:
        """The automatic timeout's estimator, when ``timeout_s="auto"``."""
        return self._auto

    async def acquire(self, item: Any) -> list[Ticket]:
        """Take a slot from every limiter, in order; give back what was taken on failure."""
        cost = self._cost(item) if self._cost is not None else 1.0
        slots: list[Ticket] = []
        try:
            for limiter in self._limiters:
                slots.append(await limiter.admit(cost))  # noqa: PERF401 - each may fail
        except BaseException:
            for slot in slots:
                slot.give_back()  # nothing was sent
            raise
        return slots

    def succeeded(self, latency_s: float) -> None:
        """Learn from a successful attempt (the automatic timeout follows the latency)."""
        auto = self._auto
        if auto is not None and auto.observe(latency_s):
            self._retime_warmup()

    def _retime_warmup(self) -> None:
        assert self._auto is not None
        timeout_s = self._auto.timeout_s()
        for timer, started in list(self._warmup.items()):
            if not timer.expired():
                timer.reschedule(started + timeout_s)

    def _limit_s(self, started: float, first_start: float) -> tuple[float, bool]:
        """The attempt's time limit, and whether it is the item's deadline that sets it."""
        policy = self._policy
        limit = self._auto.timeout_s() if self._auto is not None else policy.timeout_s
        if policy.deadline_s is not None:
            remaining = policy.deadline_s - (started - first_start)
            if remaining <= 0:
                # A retry that could only start at or after the deadline is not made at all.
                raise DeadlineExceeded(policy.deadline_s, 0)
            if limit is None or remaining < limit:  # type: ignore[operator]
                return remaining, True
        assert isinstance(limit, float | int)
        return float(limit), False

    async def bounded_call(self, item: Any, started: float, first_start: float) -> Any:
        """Run one attempt under the per-attempt timeout and the item's deadline."""
        policy = self._policy
        if policy.deadline_s is None and self._auto is None and self.threads is None:
            return await self._watched_call(item, policy.timeout_s)  # type: ignore[arg-type]
        auto = self._auto
        warming = auto is not None and not auto.warm
        limit, deadline_bound = self._limit_s(started, first_start)
        loop = self._loop
        threads = self.threads
        if threads is not None:
            # A thread's timer starts when the thread does, not while the call waits for one.
            timer = asyncio.timeout_at(None)
            bound = limit

            def start_timer() -> None:
                if timer.when() is None and not timer.expired():
                    with contextlib.suppress(RuntimeError):  # the attempt already ended
                        timer.reschedule(loop.time() + bound)

            call: Awaitable[Any] = threads(item, start_timer)
        else:
            timer = asyncio.timeout_at(loop.time() + limit)
            call = self.call(item)
        if warming and not deadline_bound:
            self._warmup[timer] = loop.time()
        try:
            async with timer:
                return await call
        except TimeoutError:
            if not timer.expired():
                raise  # the function's own TimeoutError, not ours
            raise self._timed_out(limit, deadline_bound, started) from None
        finally:
            if warming:
                self._warmup.pop(timer, None)

    async def _watched_call(self, item: Any, limit: float) -> Any:
        """Run one attempt under the fixed time limit `limit`, its timer armed only if it runs out.

        `asyncio.timeout` arms a loop timer per attempt (a heap entry, ordered by Python-level
        comparisons, and cancelled again a few milliseconds later, in nearly every attempt).
        With one limit for all, attempts run out in the order they started: one sweep timer,
        due when the oldest attempt in flight runs out, arms the timer of each attempt that
        did, exactly at its time (`_sweep_due`). An attempt costs a dict entry, not a timer.
        """
        loop = self._loop
        timer = asyncio.timeout_at(None)
        live = self._live
        try:
            async with timer:
                ends = loop.time() + limit
                live[timer] = ends
                if self._sweep is None:
                    self._sweep = loop.call_at(ends, self._sweep_due)
                try:
                    return await self.call(item)
                finally:
                    live.pop(timer, None)
        except TimeoutError:
            if not timer.expired():
                raise  # the function's own TimeoutError, not ours
            raise AttemptTimeout(limit) from None

    def _sweep_due(self) -> None:
        """Time out the attempts that ran out; wake again when the next one does."""
        self._sweep = None
        live = self._live
        now = self._loop.time()
        for timer, ends in list(live.items()):
            if ends > now:
                self._sweep = self._loop.call_at(ends, self._sweep_due)
                return
            del live[timer]
            timer.reschedule(ends)  # in the past: it fires at once, as asyncio's own would

    def _timed_out(self, limit: float, deadline_bound: bool, started: float) -> Exception:
        """The error for an attempt our timer cut."""
        policy, auto = self._policy, self._auto
        if deadline_bound:
            return DeadlineExceeded(policy.deadline_s or 0.0, 0)
        if auto is not None:
            # A timeout is a latency of at least the limit: if the API slowed down for good,
            # the estimate must grow, or nothing would ever succeed again.
            took = self._loop.time() - started
            if auto.observe_timeout(took):
                self._retime_warmup()
            return AttemptTimeout(took, automatic=True)
        return AttemptTimeout(limit)

    def shutdown(self) -> None:
        """Stop the sweep timer; release the thread pool, if any."""
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        if self.threads is not None:
            self.threads.shutdown()
