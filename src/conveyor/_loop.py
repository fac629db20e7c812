"""The event loop of the processes Conveyor owns (``conveyor run``, ``worker``): asyncio's.

uvloop was measured for them (``bench/clients.py``, ``bench/http.py`` scenario 4): 10-25% less
client CPU per request in most rounds, more in one (docs/decisions.md). It is not used: under
uvloop, a Redis connection cut mid-call (the shared limiters', the answer cache's) raises
``RuntimeError("... the handler is closed")`` where asyncio raises a connection error, and the
fault suite's Redis cut then failed an item instead of waiting for Redis to come back
(``tests/faults/test_outages.py``). One place chooses the loop, should that change.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from collections.abc import Coroutine
    from typing import Any

__all__ = ["run"]

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run `main` to completion on a new asyncio loop."""
    return asyncio.run(main)
