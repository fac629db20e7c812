"""`sweeper`: the app's background task that expires batches nobody reads.

Each batch API brings its sweep (`routes_batches.sweep_batches`, OpenAI's;
`message_batches.sweep_message_batches`, Anthropic's): a coroutine that expires what is due
and returns when the next batch falls due (or None). The sweeper runs them all every
``interval_s``, or sooner when a batch falls due sooner, until it is cancelled.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from .. import _clock

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from .state import Service

__all__ = ["sweeper"]

log = logging.getLogger(__name__)


async def sweeper(
    service: Service,
    interval_s: float,
    sweeps: Sequence[Callable[[Service], Awaitable[float | None]]],
) -> None:
    """Run the sweeps every `interval_s` (sooner when a batch falls due sooner), until cancelled."""
    while True:
        earliest: float | None = None
        for sweep in sweeps:
            try:
                due = await sweep(service)
            except Exception:  # a folder that cannot be read now: try again next time
                log.exception("the batch expiry sweep failed")
                continue
            if due is not None:
                earliest = due if earliest is None else min(earliest, due)
        wait = interval_s
        if earliest is not None:
            wait = min(wait, max(earliest - _clock.wall(), 0.0))
        await asyncio.sleep(wait)
