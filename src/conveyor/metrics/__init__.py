"""Prometheus metrics of a service or worker: ``pip install 'conveyor[metrics]'``.

>>> metrics = Metrics(app=app, store=store)  # doctest: +SKIP
>>> worker = Worker(store, app, observers=metrics.observers())  # doctest: +SKIP
>>> async with MetricsListener(metrics, port=9464):  # doctest: +SKIP
...     await worker.run()

`conveyor serve` answers ``GET /metrics``, and ``conveyor worker --metrics-port N`` serves it
on 127.0.0.1:N. The metrics, their labels and a scrape config:
``docs/howto/monitor-with-prometheus.md``.
"""

from .listener import MetricsListener as MetricsListener
from .registry import Metrics as Metrics

__all__ = ["Metrics", "MetricsListener"]
