"""The dashboard's views: a job's rate series, the limiters, the workers; the favicon. Thin.

- ``GET /v1/jobs/{id}/series``: the items the job settled per second, by when they ended
  (`conveyor.jobs.series`), kept in the store: a finished job shows its whole history.
- ``GET /v1/limiters``: this process's shared limiters: rate admitted against the limits,
  pushbacks (429s, overloads), what the API's headers state is left (`.limiter_view`).
- ``GET /v1/workers``: the workers holding a lease in the store, what they run, and this
  process's own worker (alive, restarts, store outages).
"""

from __future__ import annotations

import math
from importlib import resources
from typing import TYPE_CHECKING, Any

from starlette.responses import FileResponse

from .. import _clock
from ..jobs.model import TERMINAL
from ..jobs.overview import HasViews
from ..jobs.series import rate_points
from .limiter_view import limiter_now
from .state import json_response, only_params, service_of
from .views import limits_of

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from .state import Service

__all__ = ["FAVICON", "favicon", "job_series", "limiters_endpoint", "workers_endpoint"]

#: Job ids a workers view looks up at most (each one read to check it is the caller's).
MAX_JOBS_SHOWN = 100


#: The dashboard's icon, beside its page.
FAVICON = resources.files("conveyor.service") / "dashboard" / "favicon.svg"


async def favicon(_: Request) -> Response:
    """``GET /favicon.ico``: the dashboard's icon (SVG, which browsers take at this path)."""
    return FileResponse(str(FAVICON), media_type="image/svg+xml")


async def job_series(request: Request) -> Response:
    """``GET /v1/jobs/{job_id}/series``: items settled per second, and what is in flight."""
    service = service_of(request)
    _, job = await service.job(request)
    only_params(request)
    store = service.jobs.store
    counts = await store.rate_counts(job.id) if isinstance(store, HasViews) else []
    running = job.status not in TERMINAL
    points = rate_points(counts, until_s=math.floor(_clock.wall()) if running else None)
    return json_response(
        {
            "job_id": job.id,
            "status": job.status,
            "recorded": isinstance(store, HasViews),
            "start_s": points.start_s,
            "bucket_s": points.bucket_s,
            "per_s": list(points.per_s),
            "busiest_second": max((n for _, n in counts), default=0),
            "limits": limits_of(service.app, job),
            "claimed": job.counts.running,
            "in_flight": _in_flight(service, job.id),
        }
    )


def _in_flight(service: Service, job_id: str) -> int | None:
    """The job's calls in flight in this process's worker; None without one."""
    return None if service.worker is None else service.inflight.of(job_id)


async def limiters_endpoint(request: Request) -> Response:
    """``GET /v1/limiters``: each shared limiter now, with its admitted rate over time."""
    service = service_of(request)
    service.tenant(request)  # the caller must be known (limits are the operator's)
    only_params(request)
    wall = _clock.wall()
    data = [
        {**limiter_now(lim), "series": service.limiter_series.sample(lim, wall)}
        for lim in service.app.limiters
    ]
    return json_response({"object": "list", "now": wall, "data": data})


async def workers_endpoint(request: Request) -> Response:
    """``GET /v1/workers``: the workers the store knows, and this process's own."""
    service = service_of(request)
    tenant = service.tenant(request)
    only_params(request)
    store = service.jobs.store
    leases = await store.worker_leases() if isinstance(store, HasViews) else []
    own = service.worker
    lease_s = own.worker.options.lease_s if own is not None else None
    now = _clock.wall()
    yours = await _tenants_jobs(service, tenant, {j for w in leases for j in w.running})
    workers: list[dict[str, Any]] = [
        {
            "id": lease.worker_id,
            "alive": lease.lease_until >= now,
            "lease_until": lease.lease_until,
            # Renewed every lease_s / 3: the last renewal, if the worker's lease_s is ours.
            "renewed_at": None if lease_s is None else lease.lease_until - lease_s,
            "running_items": sum(lease.running.values()),
            "jobs": {j: n for j, n in lease.running.items() if j in yours},
            "in_this_process": own is not None and own.worker.id == lease.worker_id,
        }
        for lease in leases
    ]
    this = None
    if own is not None:
        outage = own.worker.outage
        this = {
            "id": own.worker.id,
            "alive": own.alive,
            "restarts": own.restarts,
            "last_error": own.last_error,
            "settled": own.worker.settled,
            "store_down": outage.down,
            "store_outages": outage.count,
            "lease_s": lease_s,
            "tasks": own.worker.app.task_names,  # a worker claims only jobs of these
        }
    return json_response({"now": now, "recorded": isinstance(store, HasViews), "data": workers,
                          "this_process": this})  # fmt: skip


async def _tenants_jobs(service: Service, tenant: str, job_ids: set[str]) -> set[str]:
    """Those of `job_ids` that are `tenant`'s (another tenant's jobs are not named)."""
    mine = set()
    for job_id in sorted(job_ids)[:MAX_JOBS_SHOWN]:
        job = await service.jobs.store.get_job(job_id)
        if job is not None and job.tenant == tenant:
            mine.add(job_id)
    return mine
