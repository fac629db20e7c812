"""Plain (sync) functions, run in a thread pool as wide as the concurrency cap.

Threads cannot be interrupted. So an attempt's timeout starts when its thread starts (not
while it waits for a free thread), and a call that timed out keeps its thread until it
returns: the pool stays an honest cap on what really runs at once.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from concurrent.futures import ThreadPoolExecutor
from contextvars import Context, copy_context
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["ThreadCaller"]


class ThreadCaller:
    """Calls `fn(item)` in a thread; awaits a coroutine it returns (``lambda i: coro(i)``)."""

    __slots__ = ("_executor", "_fn", "_loop")

    def __init__(self, fn: Callable[[Any], Any], *, max_workers: int) -> None:
        self._fn = fn
        self._loop = asyncio.get_running_loop()
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="conveyor")

    async def __call__(self, item: Any, on_start: Callable[[], object] | None = None) -> Any:
        """Run one call; `on_start` runs on the loop when the thread picks the call up."""
        loop, fn = self._loop, self._fn
        abandoned = threading.Event()
        returned: list[Any] = []

        def run(ctx: Context) -> Any:
            if on_start is not None:
                loop.call_soon_threadsafe(on_start)
            result = ctx.run(fn, item)
            returned.append(result)
            if abandoned.is_set():
                _close_if_coroutine(result)
            return result

        try:
            result = await loop.run_in_executor(self._executor, run, copy_context())
        except asyncio.CancelledError:
            # A coroutine the thread returns now would never be awaited: whichever side sees
            # it last closes it (closing twice is harmless).
            abandoned.set()
            if returned:
                _close_if_coroutine(returned[0])
            raise
        if inspect.isawaitable(result):
            result = await result
        return result

    def shutdown(self) -> None:
        """Stop taking calls; calls already running finish in the background."""
        self._executor.shutdown(wait=False, cancel_futures=True)


def _close_if_coroutine(result: object) -> None:
    if inspect.iscoroutine(result):
        result.close()
