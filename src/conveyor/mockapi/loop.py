"""The event loop the mock API's own processes run: uvloop where it is installed.

The mock API must not be the bottleneck of what it measures. At 2,000 requests a second (5,000
requests at concurrency 100 and 50 ms), answers from one process on asyncio's own loop took
53.3 ms on average against 51.8 ms on uvloop (a minimal client, 2-core machine), so
its processes run uvloop when it can be imported (it is a dependency except on Windows, where
it does not exist). Clients keep whatever loop they run: `MockAPI` in a test serves from the
test's loop.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Coroutine

__all__ = ["run_loop"]


def run_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run `main` to completion on a new loop: uvloop's if installed, else asyncio's."""
    try:
        import uvloop  # noqa: PLC0415 - optional: absent on Windows
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)
