"""The public test kit: virtual time for asyncio, and the local mock API.

`MockAPI` (with `MockConfig` and `Faults`) is a rate-limited fake LLM/SaaS server on
127.0.0.1, to run your code against in tests: ``async with MockAPI(MockConfig(rpm=600,
window_s=1)) as api: ... api.base_url ... api.stats()``.

`VirtualClock` runs a coroutine on an event loop whose clock is virtual and *jumps*: whenever
every task is waiting on a timer, time advances straight to the next timer instead of sleeping.
A test of a 30-second backoff or a 5-second timeout finishes at once and sees exact times, and
this holds for everything that waits through the loop: `asyncio.sleep`, `asyncio.timeout`,
``loop.call_later``, Conveyor's engine and your own code alike.

>>> clock = VirtualClock()
>>> async def main() -> float:
...     await asyncio.sleep(30)
...     return clock.now
>>> clock.run(main())
30.0

Calls run in threads through the loop (``run_in_executor``, Conveyor's plain functions) take no
virtual time: the clock stands still until they return. Other work outside the loop (a
subprocess, a real socket) takes real time while virtual time may jump past it, so keep
virtual-time tests to code that waits through the loop.
"""

from __future__ import annotations

import asyncio
import math
import selectors
import time
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from collections.abc import Coroutine

from .mockapi import Faults, MockAPI, MockConfig

__all__ = ["Faults", "MockAPI", "MockConfig", "VirtualClock"]

T = TypeVar("T")


class VirtualClock:
    """A virtual clock that drives its own event loop. `now` is the loop's time in seconds.

    Args:
        start_s: the loop time at the start.
        wall_start_s: the Unix time at the start, for code that reads wall-clock time through
            Conveyor (HTTP-date headers); by default the real time when the clock is made.
    """

    def __init__(self, *, start_s: float = 0.0, wall_start_s: float | None = None) -> None:
        self._start_s = start_s
        self._now = start_s
        self._wall_start_s = time.time() if wall_start_s is None else wall_start_s
        self._outside = 0

    @property
    def now(self) -> float:
        """The virtual monotonic time, in seconds."""
        return self._now

    def wall(self) -> float:
        """Return the virtual Unix time, in seconds."""
        return self._wall_start_s + (self._now - self._start_s)

    def advance(self, seconds: float) -> None:
        """Move time forward by `seconds` (the loop does this itself when idle)."""
        if seconds < 0:
            msg = f"advance(seconds={seconds}): time only moves forward"
            raise ValueError(msg)
        self._now += seconds

    def jump(self, seconds: float) -> None:
        """Advance to a timer `seconds` away.

        asyncio runs a timer once ``when < now + resolution`` (1 ns). Past about 2**24 s that
        nanosecond is below a float's precision, and landing exactly on `when` would never run
        the timer; there the clock lands one ulp past it instead. Below, times stay exact.
        """
        now = self._now + seconds
        if now + 1e-9 == now:
            now = math.nextafter(now, math.inf)
        self._now = now

    @property
    def outside_work(self) -> int:
        """How many calls are running in threads for the loop (time stands still meanwhile)."""
        return self._outside

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        """Return a new event loop driven by this clock."""
        return _VirtualLoop(self)

    def run(self, main: Coroutine[Any, Any, T]) -> T:
        """Run `main` to completion on a new virtual-time loop, like `asyncio.run`."""
        with asyncio.Runner(loop_factory=self.new_event_loop) as runner:
            return runner.run(main)


class _JumpingSelector(selectors.DefaultSelector):
    """A selector that, instead of blocking until the next timer, jumps the clock to it."""

    def __init__(self, clock: VirtualClock) -> None:
        super().__init__()
        self._clock = clock

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:
            # No timer pending: only real I/O (a thread finishing, a signal) can wake the loop.
            return super().select(None)
        if self._clock.outside_work and timeout > 0:
            # A thread is working for the loop: virtual time stands still until it is done
            # (its completion wakes the loop), so a timer cannot fire "during" it. Waiting in
            # real-time slices keeps a lost wake-up from ever hanging the loop.
            return super().select(0.05)
        ready = super().select(0)
        if not ready and timeout > 0:
            self._clock.jump(timeout)
        return ready


class _VirtualLoop(asyncio.SelectorEventLoop):
    """An event loop whose `time()` is the virtual clock's."""

    def __init__(self, clock: VirtualClock) -> None:
        self._virtual_clock = clock
        super().__init__(selector=_JumpingSelector(clock))

    def time(self) -> float:
        return self._virtual_clock.now

    def run_in_executor(  # type: ignore[override]  # same call, simpler typing
        self, executor: Any, func: Any, *args: Any
    ) -> asyncio.Future[Any]:
        """Run `func` in a thread; virtual time stands still until it returns."""
        clock = self._virtual_clock
        clock._outside += 1  # noqa: SLF001 - the loop and its clock are one unit

        def done(_: asyncio.Future[Any]) -> None:
            clock._outside -= 1  # noqa: SLF001

        future = super().run_in_executor(executor, func, *args)
        future.add_done_callback(done)
        return future

    def wall_time(self) -> float:
        """Return the virtual Unix time (read by `conveyor._clock.wall`)."""
        return self._virtual_clock.wall()
