"""Fixtures for the service tests.

An app of test tasks, the service in-process, and a real

server on 127.0.0.1 for what needs real sockets (event streams, the browser).
"""

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from conveyor.jobs import App, MemoryStore, Store
from conveyor.jobs.worker import WorkerOptions
from conveyor.service import ServiceConfig, create_app
from conveyor.service.config import Limits
from conveyor.service.keys import add_key

# Workers in these tests look for work and write results often, so that a job's progress
# shows within a few tenths of a second (the defaults are for throughput).
FAST_WORKER = WorkerOptions(poll_interval_s=0.05, flush_interval_s=0.05, claim_size=50)


def make_app() -> App:
    """Tasks: echo (fails items with "fail"), slow (sleeps "s" seconds), flaky (fails once)."""
    app = App()
    failed_once: set[Any] = set()

    @app.task("echo")
    async def echo(item: Any) -> Any:
        if isinstance(item, dict) and item.get("fail"):
            msg = f"refused {item}"
            raise ValueError(msg)
        return item

    @app.task("slow")
    async def slow(item: Any) -> Any:
        await asyncio.sleep(float(item.get("s", 0.05)) if isinstance(item, dict) else 0.05)
        return item

    @app.task("flaky")
    async def flaky(item: Any) -> Any:
        key = repr(item)
        if isinstance(item, dict) and item.get("fail") and key not in failed_once:
            failed_once.add(key)
            msg = f"upstream hiccup on {item['n']}"
            raise RuntimeError(msg)
        return item

    return app


def config(tmp_path: Path, *, keys: bool = False, **limits: int) -> ServiceConfig:
    return ServiceConfig(
        store="memory:",
        keys_file=(tmp_path / "keys.json") if keys else None,
        files_dir=tmp_path / "files",
        limits=Limits(**limits),
        events_interval_s=0.05,
    )


class Api:
    """An httpx client on the service in-process (ASGI), with its lifespan running."""

    def __init__(self, client: httpx.AsyncClient, asgi: Any) -> None:
        self.client = client
        self.asgi = asgi

    async def wait_done(self, job_id: str, headers: dict[str, str] | None = None) -> Any:
        """Poll until the job is done (bounded: 5 s, the worker settles test jobs in ms)."""
        async with asyncio.timeout(5):
            while True:
                job = (await self.client.get(f"/v1/jobs/{job_id}", headers=headers)).json()
                if job["status"] in {"completed", "failed", "cancelled"}:
                    return job
                await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def api(
    cfg: ServiceConfig, *, worker: bool = True, store: Store | None = None
) -> AsyncIterator[Api]:
    """The service in-process on `store` (default: a new `MemoryStore`), lifespan running."""
    asgi = create_app(
        cfg,
        app=make_app(),
        store=store if store is not None else MemoryStore(),
        worker=worker,
        worker_options=FAST_WORKER,
    )
    async with asgi.router.lifespan_context(asgi):
        transport = httpx.ASGITransport(app=asgi)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            yield Api(client, asgi)


def key_for(tmp_path: Path, tenant: str) -> dict[str, str]:
    """A new API key of `tenant` in the test's keys file, as request headers."""
    _, secret = add_key(tmp_path / "keys.json", tenant=tenant)
    return {"Authorization": f"Bearer {secret}"}


class LiveServer:
    """The service on a real socket at 127.0.0.1, in a thread with its own event loop."""

    def __init__(self, asgi: Any) -> None:
        self.asgi = asgi
        self.server = uvicorn.Server(
            uvicorn.Config(asgi, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "LiveServer":  # noqa: PYI034 - Self needs 3.11 typing; fine either way
        self.thread.start()
        started = threading.Event()
        for _ in range(500):  # 5 s at most for the server to listen
            if self.server.started:
                started.set()
                break
            started.wait(0.01)
        assert self.server.started, "the test server did not start within 5 s"
        return self

    @property
    def url(self) -> str:
        sock = self.server.servers[0].sockets[0]
        host, port = sock.getsockname()[:2]
        return f"http://{host}:{port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    """A real server with the test tasks, a fast in-process worker and the SQLite store."""
    cfg = ServiceConfig(
        store=f"sqlite:///{tmp_path / 'jobs.db'}",
        keys_file=None,
        files_dir=tmp_path / "files",
        events_interval_s=0.05,
    )
    asgi = create_app(cfg, app=make_app(), worker_options=FAST_WORKER)
    with LiveServer(asgi) as server:
        yield server
