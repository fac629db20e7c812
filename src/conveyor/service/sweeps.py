"""`sweeper`: the app's background task that expires batches nobody reads, and cleans up.

Each batch API brings its sweep (`openai_batches.sweep_batches`, OpenAI's;
`message_batches.sweep_message_batches`, Anthropic's): a coroutine that expires what is due
and returns when the next batch falls due (or None); `sweep_uploads` removes the uploads of a
process that died mid-way. The sweeper runs them all every ``interval_s``, or sooner when a
batch falls due sooner, until it is cancelled. Every instance on one store sweeps it: each
change is made under the batch's row lock, so two sweeps of one batch take turns.

While the store cannot be reached (or refuses the service) the sweeps fail: that is said once
(one line, no traceback: it is not a bug), and once when they work again.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from .. import _clock
from ..jobs.errors import StoreError, StoreUnavailable

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from .state import Service

__all__ = ["sweep_uploads", "sweeper"]

log = logging.getLogger(__name__)


async def sweep_uploads(service: Service) -> float | None:
    """Remove the uploads left idle by a process that died (`files.UPLOAD_IDLE_S`); None."""
    await service.files.sweep()
    return None


async def sweeper(
    service: Service,
    interval_s: float,
    sweeps: Sequence[Callable[[Service], Awaitable[float | None]]],
) -> None:
    """Run the sweeps every `interval_s` (sooner when a batch falls due sooner), until cancelled."""
    outage = False
    while True:
        earliest: float | None = None
        for sweep in sweeps:
            try:
                due = await sweep(service)
            except (StoreUnavailable, StoreError) as exc:  # the operator's to mend, not a bug
                if not outage:
                    log.warning("the sweep of batches and uploads waits for the store: %s", exc)
                outage = True
                continue
            except Exception:  # a bug, or a record that cannot be read: try again next time
                log.exception("the batch expiry sweep failed")
                continue
            if outage:
                log.warning("the sweep of batches and uploads works again")
                outage = False
            if due is not None:
                earliest = due if earliest is None else min(earliest, due)
        wait = interval_s
        if earliest is not None:
            wait = min(wait, max(earliest - _clock.wall(), 0.0))
        await asyncio.sleep(wait)
