"""The job service over HTTP: REST API, live progress (SSE), dashboard, API keys and tenants.

>>> from conveyor.service import ServiceConfig, create_app  # doctest: +SKIP
>>> asgi = create_app(ServiceConfig(), app=my_app)  # doctest: +SKIP
>>> fastapi_app = FastAPI(lifespan=asgi.lifespan)  # in your own app  # doctest: +SKIP
>>> fastapi_app.mount("/jobs", asgi)  # doctest: +SKIP

Needs the ``service`` extra (``pip install 'conveyor[service]'``); ``conveyor serve`` runs it.
How it works: ``docs/explanations/service.md``.
"""

from .app import create_app as create_app
from .config import Connection as Connection
from .config import Limits as Limits
from .config import ServiceConfig as ServiceConfig
from .config import load_config as load_config
from .embed import JobService as JobService

__all__ = ["Connection", "JobService", "Limits", "ServiceConfig", "create_app", "load_config"]
