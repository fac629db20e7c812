"""The job service inside another web app: its lifespan for the host, and CORS for browsers.

>>> jobs_api = create_app(ServiceConfig(store="sqlite:///jobs.db"), app=tasks)  # doctest: +SKIP
>>> app = FastAPI(lifespan=jobs_api.lifespan)  # doctest: +SKIP
>>> app.mount("/jobs", jobs_api)  # doctest: +SKIP

A Starlette (or FastAPI) app does not run the lifespan of an app it mounts, and the service's
lifespan is what opens the store and starts the in-process worker. So `JobService.lifespan`
hands it to the host: as the host's lifespan, or inside the host's own (``async with
jobs_api.lifespan(): yield``). A service with an in-process worker whose lifespan never ran
answers 503 saying so (`conveyor.service.state.service_of`), instead of queueing jobs that
nothing runs. Links in answers and the dashboard's assets follow the mount's path.

CORS (`cors`) is Starlette's `CORSMiddleware` over the whole service, for the origins of
`ServiceConfig.cors_origins` only: no wildcard, and no cookies (``allow_credentials`` off: the
API key is a header the page sends, not a credential the browser adds by itself).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager

__all__ = ["JobService", "cors"]

#: The headers a page may send: the key (either way), the body's type, an idempotency key,
#: and a stream's resume point.
_REQUEST_HEADERS = [
    "authorization",
    "x-api-key",
    "content-type",
    "idempotency-key",
    "last-event-id",
]
#: The answer headers a page may read besides the simple ones.
_EXPOSED = ["Location", "Idempotent-Replayed", "Retry-After"]


class JobService(Starlette):
    """The service as an ASGI app (`create_app` makes it); mount it in a FastAPI app."""

    def lifespan(self, _host: object = None) -> AbstractAsyncContextManager[None]:
        """The service's lifespan: the store opened and the worker running while it is entered.

        Pass it as the host's (``FastAPI(lifespan=jobs_api.lifespan)``; the host app it is
        given is not used) or enter it in the host's own lifespan. Entered twice at once, it
        raises `RuntimeError`.
        """
        # The service's lifespan yields no state (`create_app`): narrow Starlette's type.
        return cast("AbstractAsyncContextManager[None]", self.router.lifespan_context(self))


def cors(origins: tuple[str, ...]) -> list[Middleware]:
    """The CORS middleware for `origins` (none when there is no origin: no CORS at all)."""
    if not origins:
        return []
    return [
        Middleware(
            CORSMiddleware,
            allow_origins=list(origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=_REQUEST_HEADERS,
            expose_headers=_EXPOSED,
            allow_credentials=False,
            max_age=600,
        )
    ]
