"""The only reader of time.

Conveyor waits only through the running event loop (``asyncio.sleep``, ``asyncio.timeout``), so
the loop's clock is the one clock: `now()` reads it, and `conveyor.testing.VirtualClock` replaces
it with virtual time for the whole run, user code included. Wall-clock time is read only to
interpret HTTP-date headers and to stamp records, through `wall()`, which follows the virtual
clock too.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["now", "wall", "wall_source"]


def now() -> float:
    """Return the running loop's monotonic time in seconds."""
    return asyncio.get_running_loop().time()


def wall() -> float:
    """Return the Unix time in seconds (virtual under `conveyor.testing.VirtualClock`)."""
    return wall_source()()


def wall_source() -> Callable[[], float]:
    """What `wall` reads, looked up once: for a caller that dates many things on one loop."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return time.time
    wall_time = getattr(loop, "wall_time", None)
    return wall_time if callable(wall_time) else time.time
