"""``GET /metrics``: the service's Prometheus metrics on its own port, while it has no keys.

The metrics count every tenant's work together (jobs by status, items, tokens and spend), so
a tenant's API key must not read them. And a check of the caller's address would be fooled
by a reverse proxy on the same machine, whose every request comes from loopback. So:

- without API keys (the service then answers loopback only, `conveyor.service.hosts`),
  ``/metrics`` is served here, like every other route;
- with API keys, it is refused here (403, saying where to look) and served by a listener of
  its own, ``conveyor serve --metrics-port N`` (`conveyor.metrics.MetricsListener`, bound to
  127.0.0.1 unless ``--metrics-host`` says otherwise): an address the operator exposes to
  Prometheus only.

Without the metrics extra (``prometheus-client``), the route answers 404 saying how to add it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.responses import Response

from .problems import Problem
from .state import service_of

if TYPE_CHECKING:
    from starlette.requests import Request

__all__ = ["metrics_endpoint"]


async def metrics_endpoint(request: Request) -> Response:
    """``GET /metrics``: Prometheus's text format (OpenMetrics when asked for)."""
    service = service_of(request)
    if service.metrics is None:
        raise Problem(
            404,
            "metrics need the metrics extra: pip install 'conveyor[metrics]' and restart the"
            " service",
        )
    if service.keys.enabled:
        raise Problem(
            403,
            "with API keys, /metrics is not served on the API's port (it counts every"
            " tenant's work): start the service with --metrics-port PORT and scrape"
            " http://127.0.0.1:PORT/metrics (see docs/howto/monitor-with-prometheus.md)",
        )
    body, content_type = await service.metrics.render(request.headers.get("accept", ""))
    return Response(body, headers={"Content-Type": content_type, "Cache-Control": "no-store"})
