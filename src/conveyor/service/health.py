"""``GET /healthz``: whether the service can do its work now (its store, Redis, its worker).

For load balancers and operators: 200 while the store answers (``"status": "ok"``, or
``"degraded"`` when the Redis the limits are kept in (``--limits``) does not answer a PING,
or the in-process worker
is waiting to be restarted: jobs then wait, nothing fails), 503 while the store cannot be
reached (``"down"``: every route that needs the store answers 503 too). No API key is needed;
the reasons (which name hosts) are shown only to a caller with a valid key, or when the
service has no keys (loopback only).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from ..jobs.errors import StoreError, StoreUnavailable
from .problems import Problem
from .state import json_response, service_of

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from .state import Service

__all__ = ["healthz"]

logger = logging.getLogger("conveyor.service")

#: How long the store's answer to the health probe is waited for, seconds.
PROBE_TIMEOUT_S = 3.0


async def healthz(request: Request) -> Response:
    """``GET /healthz``: the store, Redis and the worker; 503 while the store is down."""
    service = service_of(request)
    store, redis = await asyncio.gather(_store(service), _redis(service))
    worker = None
    if service.worker is not None:
        supervisor = service.worker
        worker = {
            "alive": supervisor.alive,
            "restarts": supervisor.restarts,
            "error": supervisor.last_error,
        }
    if not store["ok"]:
        status = "down"
    elif (redis is not None and not redis["ok"]) or (worker is not None and not worker["alive"]):
        status = "degraded"
    else:
        status = "ok"
    body: dict[str, Any] = {"status": status, "store": store, "redis": redis, "worker": worker}
    if not _may_see_reasons(service, request):
        for part in (store, redis, worker):
            if part is not None:
                part["error"] = None if part["error"] is None else "hidden: send an API key"
    return json_response(
        body, 503 if status == "down" else 200, headers={"Cache-Control": "no-store"}
    )


async def _store(service: Service) -> dict[str, Any]:
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            await service.jobs.store.get_job("healthz")
    except StoreUnavailable as exc:
        return {"ok": False, "error": exc.cause}
    except TimeoutError:
        return {"ok": False, "error": f"no answer within {PROBE_TIMEOUT_S:g} s"}
    except StoreError as exc:  # refused for good (a login, a newer schema): said, not traced
        return {"ok": False, "error": str(exc)}
    except Exception as exc:  # a health check answers, whatever the store did
        logger.exception("conveyor service: the health check's read of the store failed")
        return {"ok": False, "error": f"{type(exc).__name__} (the error is in the log)"}
    return {"ok": True, "error": None}


async def _redis(service: Service) -> dict[str, Any] | None:
    """The Redis the limits are kept in, pinged; None when the limits are not in Redis."""
    limits = service.shared_limits
    if limits is None:
        return None
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            why = await limits.check()
    except TimeoutError:
        why = f"Redis at {limits.url}: no answer within {PROBE_TIMEOUT_S:g} s"
    return {"ok": why is None, "error": why}


def _may_see_reasons(service: Service, request: Request) -> bool:
    if not service.keys.enabled:
        return True
    try:
        service.tenant(request)
    except Problem:
        return False
    return True
