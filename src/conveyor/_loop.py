"""The event loop of the processes Conveyor owns (``conveyor run``, ``worker``, ``serve``).

uvloop where it is installed (a dependency except on Windows, where it does not exist), else
asyncio's own. Measured in ``bench/http.py`` (scenario 4) and ``bench/clients.py``: the same
client spends 15-25% less CPU per request on uvloop (docs/decisions.md). A program that embeds
Conveyor (``conveyor.map``, ``Batch``, a worker in an app's lifespan) keeps whatever loop it runs.
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
    """Run `main` to completion on a new loop: uvloop's if installed, else asyncio's."""
    try:
        import uvloop  # noqa: PLC0415 - optional: absent on Windows
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)
