"""The service through a store outage: /healthz, 503 problem+json, and a supervised worker."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conveyor.jobs import MemoryStore, StoreUnavailable
from conveyor.service import create_app
from conveyor.service import supervisor as supervisor_module
from conveyor.service.problems import STORE_UNAVAILABLE

from .conftest import FAST_WORKER, Api, config, key_for, make_app


class SwitchedStore(MemoryStore):
    """A memory store that is unreachable while `down`, and whose claims may raise a bug."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.bugs = 0  # claims that raise RuntimeError before the store works again

    def _check(self) -> None:
        if self.down:
            raise StoreUnavailable("postgresql://***@db.internal/jobs", OSError("refused"))

    async def get_job(self, job_id: str) -> Any:
        self._check()
        return await super().get_job(job_id)

    async def list_jobs(self, **kwargs: Any) -> Any:
        self._check()
        return await super().list_jobs(**kwargs)

    async def create_job(self, job: Any, items: Any, **kwargs: Any) -> Any:
        self._check()
        return await super().create_job(job, items, **kwargs)

    async def claim(self, worker_id: str, **kwargs: Any) -> Any:
        self._check()
        if self.bugs:
            self.bugs -= 1
            msg = "boom: a bug in the store"
            raise RuntimeError(msg)
        return await super().claim(worker_id, **kwargs)


@contextlib.asynccontextmanager
async def service(tmp_path: Path, store: MemoryStore, *, keys: bool = False) -> AsyncIterator[Api]:
    cfg = config(tmp_path, keys=keys)
    asgi = create_app(cfg, app=make_app(), store=store, worker_options=FAST_WORKER)
    async with asgi.router.lifespan_context(asgi):
        transport = httpx.ASGITransport(app=asgi)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            yield Api(client, asgi)


def test_healthz_says_ok_with_the_store_and_the_worker(tmp_path):
    """200 and "ok" with each part: the store answers, the worker runs, no Redis in use."""

    async def main() -> None:
        async with service(tmp_path, SwitchedStore()) as api:
            r = await api.client.get("/healthz")
            assert r.status_code == 200
            body = r.json()
            assert body["status"] == "ok"
            assert body["store"] == {"ok": True, "error": None}
            assert body["redis"] is None
            assert body["worker"] == {"alive": True, "restarts": 0, "error": None}
            assert r.headers["cache-control"] == "no-store"

    asyncio.run(main())


def test_a_store_outage_answers_503_not_500_and_health_says_down(tmp_path, caplog):
    """While the store is unreachable: /healthz 503 "down", the API 503 problem+json; then 200.

    The log says so once, not once per request.
    """
    store = SwitchedStore()

    async def main() -> None:
        async with service(tmp_path, store) as api:
            store.down = True
            health = await api.client.get("/healthz")
            assert health.status_code == 503
            assert health.json()["status"] == "down"
            assert health.json()["store"]["ok"] is False
            assert "refused" in health.json()["store"]["error"]
            for method, path in [
                ("GET", "/v1/jobs"),
                ("POST", "/v1/jobs"),
                ("GET", "/v1/jobs/nope"),
            ]:
                body = {"task": "echo", "items": [1]} if method == "POST" else None
                r = await api.client.request(method, path, json=body)
                assert r.status_code == 503, (method, path, r.text)
                assert r.headers["content-type"] == "application/problem+json"
                assert r.headers["retry-after"] == "5"
                problem = r.json()
                assert problem["type"] == STORE_UNAVAILABLE
                assert "db.internal" not in problem["detail"]  # no address to the caller
            warned = [r for r in caplog.records if "answering 503" in r.getMessage()]
            assert len(warned) == 1, [r.getMessage() for r in caplog.records]
            store.down = False
            assert (await api.client.get("/healthz")).json()["status"] == "ok"
            job = (await api.client.post("/v1/jobs", json={"task": "echo", "items": [1]})).json()
            assert (await api.wait_done(job["id"]))["status"] == "completed"

    with caplog.at_level("WARNING", logger="conveyor.service"):
        asyncio.run(main())


def test_healthz_hides_the_reasons_from_a_caller_without_a_key(tmp_path):
    """With API keys on, the store's error (a host name) is shown only with a valid key."""
    store = SwitchedStore()

    async def main() -> None:
        headers = key_for(tmp_path, "acme")
        async with service(tmp_path, store, keys=True) as api:
            store.down = True
            anonymous = (await api.client.get("/healthz")).json()
            assert anonymous["status"] == "down"
            assert "db.internal" not in str(anonymous)
            keyed = (await api.client.get("/healthz", headers=headers)).json()
            assert "refused" in keyed["store"]["error"]

    asyncio.run(main())


def test_a_worker_that_fails_is_restarted_and_the_job_runs(tmp_path, monkeypatch):
    """The in-process worker dies of a bug: it is logged, restarted, and jobs still complete.

    Before, the service kept answering 202 while its jobs stayed queued forever.
    """
    monkeypatch.setattr(supervisor_module, "FIRST_RESTART_S", 0.01)
    store = SwitchedStore()
    store.bugs = 1

    async def main() -> None:
        async with service(tmp_path, store) as api:
            job = (await api.client.post("/v1/jobs", json={"task": "echo", "items": [1, 2]})).json()
            done = await api.wait_done(job["id"])
            assert done["status"] == "completed"
            worker = (await api.client.get("/healthz")).json()["worker"]
            assert worker["restarts"] == 1
            assert worker["alive"] is True
            assert "boom" in worker["error"]

    asyncio.run(main())


@pytest.mark.parametrize("path", ["/healthz"])
def test_healthz_is_in_no_tenant_and_needs_no_key(tmp_path, path):
    """A load balancer's probe has no key: /healthz answers it (status only)."""

    async def main() -> None:
        async with service(tmp_path, SwitchedStore(), keys=True) as api:
            r = await api.client.get(path)
            assert r.status_code == 200
            assert r.json()["status"] == "ok"

    asyncio.run(main())


def test_a_store_that_refuses_the_login_is_503_in_one_log_line_without_a_password(tmp_path, caplog):
    """A role PostgreSQL refuses: 503 problem+json (not 500), healthz names why; no traceback."""
    from urllib.parse import urlsplit

    from conveyor.jobs.stores.postgres import PostgresStore

    from ..services import postgres_url

    where = urlsplit(postgres_url()).netloc.rpartition("@")[2]
    store = PostgresStore(f"postgresql://no_such_role:s3cretPW@{where}/test")

    async def main() -> None:
        async with service(tmp_path, store) as api:  # type: ignore[arg-type]
            for method, path in [("GET", "/v1/jobs"), ("POST", "/v1/jobs")]:
                body = {"task": "echo", "items": [1]} if method == "POST" else None
                r = await api.client.request(method, path, json=body)
                assert r.status_code == 503, (method, path, r.text)
                assert r.headers["content-type"] == "application/problem+json"
                assert r.json()["type"] == "urn:conveyor:problem:store-unusable"
                assert where not in r.text  # no address to the caller
            health = await api.client.get("/healthz")
            assert health.status_code == 503
            assert health.json()["status"] == "down"
            assert "no_such_role" in health.json()["store"]["error"]

    with caplog.at_level("INFO"):
        asyncio.run(main())
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "refused the connection" in logged
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    assert "s3cret" not in logged + caplog.text
