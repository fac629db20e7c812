"""`Bridge`: where a sync SDK client's calls use limiters, which are asyncio's.

A sync client's calls wait in the calling thread while the limiters admit them on one private
event loop, run by a daemon thread for the process: every admission, settlement and release of
a sync call happens there, so threads calling one wrapped client (or several, sharing
limiters) are paced together. The limiters a sync client uses must therefore not be used at
the same time by async code on another loop (a limiter belongs to the loop it admits on).
"""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

__all__ = ["Bridge"]

T = TypeVar("T")


class Bridge:
    """One private event loop in a daemon thread, where sync calls use the limiters."""

    _lock = threading.Lock()
    _loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def loop(cls) -> asyncio.AbstractEventLoop:
        """The bridge's loop, started on first use."""
        with cls._lock:
            if cls._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="conveyor-limiter-bridge", daemon=True
                )
                thread.start()
                cls._loop = loop
            return cls._loop

    @classmethod
    def run(
        cls,
        coro: Coroutine[Any, Any, T],
        undo: Callable[[T], Coroutine[Any, Any, None]] | None = None,
    ) -> T:
        """Run `coro` on the bridge's loop; wait for it in this thread.

        Interrupted while waiting (``KeyboardInterrupt``), the coroutine is cancelled; if it
        had just finished, `undo` is run on its result (slots taken are given back).
        """
        loop = cls.loop()
        future = asyncio.run_coroutine_threadsafe(coro, loop)
        try:
            return future.result()
        except BaseException:
            if not future.cancel() and undo is not None and not future.exception():
                asyncio.run_coroutine_threadsafe(undo(future.result()), loop)
            raise
