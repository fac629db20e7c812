"""`Metrics`: Conveyor's Prometheus metrics, in a registry of its own, rendered per scrape.

>>> metrics = Metrics(app=app, store=store)  # doctest: +SKIP
>>> worker = Worker(store, app, observers=metrics.observers())  # doctest: +SKIP
>>> body, content_type = await metrics.render()  # doctest: +SKIP

Three sources, one registry (never the global one: two services in one process, or two
tests, never see each other's counts):

- what the worker counts as it works (`conveyor.metrics.observer.ItemMetrics`);
- what the app's limiters and http tasks already count, read at scrape time
  (`conveyor.metrics.collectors`);
- the store's jobs by status and queue depth, read once per scrape (`render`), bounded in
  time (`store_timeout_s`) and in cost (`conveyor.jobs.overview`). A store that cannot be
  read makes the scrape say ``conveyor_store_up 0``: the scrape itself still answers.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from .. import _clock
from ..jobs.errors import StoreError, StoreUnavailable
from ..jobs.overview import read_overview
from ..jobs.tracing import default_observers
from .collectors import LimiterCollector, LlmCollector, store_families
from .observer import ItemMetrics

if TYPE_CHECKING:
    from collections.abc import Iterator

    from prometheus_client import Metric

    from ..jobs.app import App
    from ..jobs.observe import JobObserver
    from ..jobs.overview import StoreOverview
    from ..jobs.store import Store

__all__ = ["STORE_TIMEOUT_S", "Metrics"]

logger = logging.getLogger("conveyor.metrics")

#: How long a scrape waits for the store's answer, seconds (Prometheus's own timeout is 10 s).
STORE_TIMEOUT_S = 3.0


class _Scrape:
    """One scrape: the registry's metrics, and the store's as read for this scrape."""

    def __init__(self, registry: CollectorRegistry, store: list[Metric]) -> None:
        self._registry = registry
        self._store = store

    def collect(self) -> Iterator[Metric]:
        yield from self._registry.collect()
        yield from self._store


class Metrics:
    """The metrics of one service or worker process (see the module docstring).

    Args:
        app: whose limiters and http tasks are read at each scrape (None: none).
        store: whose jobs and queue are read at each scrape (None: no store gauges).
        store_timeout_s: how long a scrape waits for the store, seconds.
    """

    def __init__(
        self,
        *,
        app: App | None = None,
        store: Store | None = None,
        store_timeout_s: float = STORE_TIMEOUT_S,
    ) -> None:
        self.registry = CollectorRegistry()
        #: Give it to the workers (``Worker(observers=[...])``): they count into it.
        self.observer = ItemMetrics(self.registry)
        if app is not None:
            self.registry.register(LimiterCollector(app))
            self.registry.register(LlmCollector(app))
        self._store = store
        self._store_timeout_s = store_timeout_s
        self._logged = False

    def observers(self) -> list[JobObserver]:
        """A worker's observers: its default ones (spans, with OpenTelemetry), and `observer`."""
        return [*default_observers(), self.observer]

    async def _read_store(self) -> tuple[StoreOverview | None, float]:
        """The store's overview (None if it could not be read), and how long the read took."""
        assert self._store is not None
        started = _clock.now()
        overview: StoreOverview | None = None
        try:
            async with asyncio.timeout(self._store_timeout_s):
                overview = await read_overview(self._store)
        except (StoreUnavailable, StoreError, TimeoutError) as exc:
            self._log(f"the job store could not be read: {exc or type(exc).__name__}")
        except Exception as exc:  # a scrape answers, whatever the store did
            self._log(f"reading the job store failed: {exc!r}", exc)
        else:
            self._logged = False
        return overview, _clock.now() - started

    def _log(self, what: str, exc: Exception | None = None) -> None:
        """Say why the store is down once, until a read works again."""
        if not self._logged:
            self._logged = True
            logger.warning("conveyor metrics: %s (conveyor_store_up 0)", what, exc_info=exc)

    async def collector(self) -> _Scrape:
        """What one scrape shows: the registry, and the store read now."""
        families: list[Metric] = []
        if self._store is not None:
            families = store_families(*await self._read_store())
        return _Scrape(self.registry, families)

    async def render(self, accept: str = "") -> tuple[bytes, str]:
        """One scrape's body and content type, in the format `accept` asks for.

        Prometheus's text format by default; OpenMetrics when the ``Accept`` header asks for
        it (as Prometheus does).
        """
        scrape = await self.collector()
        encode, content_type = choose_encoder(accept)
        return encode(scrape), content_type
