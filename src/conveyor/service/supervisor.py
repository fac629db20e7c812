"""`WorkerSupervisor`: the service's in-process worker, kept running.

A worker survives store outages by itself (`conveyor.jobs.outage`). Anything else that ends
its `run` (a bug, an error of a task's app it could not contain) would leave the service up,
taking jobs that no one runs: so the supervisor logs it, with its traceback (a store that
refuses the service, `StoreError`, in one line: a configuration, not a bug), at once, and
starts a new worker on the same store and tasks after a wait that grows from 1 s to 60 s
(reset after a worker ran for 60 s). The health endpoint shows the restarts and the last
error (`conveyor.service.health`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from .. import _clock
from ..jobs.errors import StoreError
from ..jobs.worker import Worker, WorkerOptions
from ..policy.backoff import backoff_ceiling_s

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..jobs.app import App
    from ..jobs.observe import JobObserver
    from ..jobs.store import Store

__all__ = ["WorkerSupervisor"]

logger = logging.getLogger("conveyor.service")

#: The first and the longest wait before a failed worker is started again, seconds.
FIRST_RESTART_S = 1.0
MAX_RESTART_S = 60.0


class WorkerSupervisor:
    """Runs a `Worker` until `stop()`, starting a new one whenever one fails."""

    def __init__(
        self,
        store: Store,
        app: App,
        options: WorkerOptions,
        observers: Sequence[JobObserver] | None = None,
    ) -> None:
        self._store = store
        self._app = app
        self._options = options
        self._observers = observers
        self.worker = self._new_worker()
        #: How many times a failed worker was replaced.
        self.restarts = 0
        #: The last failure, one line, or None.
        self.last_error: str | None = None
        self._stopping = False
        self._restarting = False
        self._wake = asyncio.Event()

    def _new_worker(self) -> Worker:
        return Worker(
            self._store,
            self._app,
            options=self._options,
            close_app=False,
            observers=self._observers,
        )

    @property
    def alive(self) -> bool:
        """Whether a worker is running now (not waiting to be restarted)."""
        return not self._restarting

    def stop(self) -> None:
        """Stop the worker gracefully (see `Worker.stop`), and start no other."""
        self._stopping = True
        self.worker.stop()
        self._wake.set()

    async def run(self) -> None:
        """Run workers one after the other until `stop()`."""
        failures = 0
        while True:
            started = _clock.now()
            try:
                await self.worker.run()
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
                # A store that refuses the service is the operator's to fix: one line, no
                # traceback (one per restart, the restarts spaced up to a minute apart).
                logger.log(
                    logging.ERROR,
                    "conveyor service: the in-process worker %s failed; starting another%s",
                    self.worker.id,
                    f": {exc}" if isinstance(exc, StoreError) else "",
                    exc_info=None if isinstance(exc, StoreError) else exc,
                )
            if self._stopping:
                return
            self._restarting = True
            failures = 1 if _clock.now() - started >= MAX_RESTART_S else failures + 1
            wait_s = backoff_ceiling_s(failures, base_s=FIRST_RESTART_S, cap_s=MAX_RESTART_S)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    await self._wake.wait()  # set by stop()
            if self._stopping:
                return
            self.restarts += 1
            self._restarting = False
            self.worker = self._new_worker()
            logger.warning(
                "conveyor service: in-process worker %s started (restart %d)",
                self.worker.id,
                self.restarts,
            )
