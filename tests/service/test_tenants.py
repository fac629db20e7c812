"""Tenants on the routes beyond jobs: files and batches, and which routes need a key at all.

With API keys, another tenant's file or batch must answer exactly like one that does not
exist (so ids cannot be probed), and no route under ``/v1`` may answer without a key.
"""

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from starlette.routing import Mount, Route

from conveyor.jobs import App, MemoryStore
from conveyor.service import Connection, ServiceConfig, create_app

from .conftest import key_for

LINE = {
    "custom_id": "a",
    "method": "POST",
    "url": "/v1/chat/completions",
    "body": {"model": "mock-1", "messages": [{"role": "user", "content": "hi"}]},
}
# Routes that answer without a key: the dashboard's page and files, the API's description,
# and the health probe (status only). None of them reads a tenant's data.
# /metrics: refused (403) while the service has keys; served on --metrics-port instead
# (tests/metrics/test_service_metrics.py).
PUBLIC = {"/", "/openapi.json", "/healthz", "/static", "/metrics", "/favicon.ico"}  # icon: no data


@contextlib.asynccontextmanager
async def keyed_service(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The service with keys and one connection (never called: no worker runs here)."""
    cfg = ServiceConfig(
        store="memory:",
        keys_file=tmp_path / "keys.json",
        files_dir=tmp_path / "files",
        connections=(Connection(name="api", base_url="http://127.0.0.1:9"),),
    )
    asgi = create_app(cfg, app=App(), store=MemoryStore(), worker=False)
    async with asgi.router.lifespan_context(asgi):
        transport = httpx.ASGITransport(app=asgi)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            yield client


def _same_answer(theirs: httpx.Response, none: httpx.Response, their_id: str, made_up: str) -> None:
    """The answer about another tenant's id is the one about a made-up id, word for word."""
    assert theirs.status_code == none.status_code
    assert theirs.headers["content-type"] == none.headers["content-type"]
    assert theirs.text.replace(their_id, made_up) == none.text


def test_another_tenants_files_and_batches_answer_like_ones_that_do_not_exist(tmp_path):
    """Read, download, delete, list, or use as input: another tenant's file or batch is unknown."""

    async def main() -> None:
        async with keyed_service(tmp_path) as c:
            acme, globex = key_for(tmp_path, "acme"), key_for(tmp_path, "globex")
            r = await c.post(
                "/v1/files",
                files={"file": ("in.jsonl", json.dumps(LINE).encode() + b"\n")},
                data={"purpose": "batch"},
                headers=acme,
            )
            assert r.status_code == 200, r.text
            file_id = r.json()["id"]
            batch = {
                "input_file_id": file_id,
                "endpoint": "/v1/chat/completions",
                "completion_window": "24h",
            }
            r = await c.post("/v1/batches", json=batch, headers=acme)
            assert r.json()["status"] == "in_progress", r.text
            batch_id = r.json()["id"]
            no_file, no_batch = "file-" + "0" * 32, "batch_" + "0" * 32
            for method, path in [
                ("GET", "/v1/files/{}"),
                ("GET", "/v1/files/{}/content"),
                ("DELETE", "/v1/files/{}"),
            ]:
                theirs = await c.request(method, path.format(file_id), headers=globex)
                none = await c.request(method, path.format(no_file), headers=globex)
                assert theirs.status_code == 404, (method, path)
                _same_answer(theirs, none, file_id, no_file)
            for method, path in [("GET", "/v1/batches/{}"), ("POST", "/v1/batches/{}/cancel")]:
                theirs = await c.request(method, path.format(batch_id), headers=globex)
                none = await c.request(method, path.format(no_batch), headers=globex)
                assert theirs.status_code == 404, (method, path)
                _same_answer(theirs, none, batch_id, no_batch)

            # Nor can it be used as the input of a job or a batch.
            def job(fid: str) -> dict[str, str]:
                return {"task": "http:api", "file_id": fid}

            def batch_of(fid: str) -> dict[str, str]:
                return {**batch, "input_file_id": fid}

            for path, body in [("/v1/jobs", job), ("/v1/batches", batch_of)]:
                theirs = await c.post(path, json=body(file_id), headers=globex)
                none = await c.post(path, json=body(no_file), headers=globex)
                assert theirs.status_code in {400, 422}, (path, theirs.text)
                _same_answer(theirs, none, file_id, no_file)
            for path in ("/v1/files", "/v1/batches", "/v1/jobs"):
                assert (await c.get(path, headers=globex)).json()["data"] == [], path
            # The owner still has both: the other tenant's DELETE and cancel touched nothing.
            assert (await c.get(f"/v1/files/{file_id}/content", headers=acme)).status_code == 200
            r = await c.get(f"/v1/batches/{batch_id}", headers=acme)
            assert r.json()["status"] == "in_progress"

    asyncio.run(main())


def test_every_api_route_needs_a_key_and_only_the_public_ones_answer_without(tmp_path):
    """Each route under /v1, whatever its method, answers 401 without a key; only PUBLIC do not."""
    cfg = ServiceConfig(store="memory:", keys_file=tmp_path / "keys.json", files_dir=tmp_path)
    asgi = create_app(cfg, app=App(), store=MemoryStore(), worker=False)
    calls: list[tuple[str, str]] = []
    unguarded: set[str] = set()
    for route in asgi.routes:
        if isinstance(route, Mount):
            unguarded.add(route.path)
            continue
        assert isinstance(route, Route)
        if not route.path.startswith("/v1/"):
            unguarded.add(route.path)
            continue
        path = route.path.replace("{job_id}", "0" * 8).replace("{file_id}", "file-x")
        path = path.replace("{batch_id}", "batch_x")
        calls += [(method, path) for method in sorted(route.methods or ()) if method != "HEAD"]
    # A new route outside /v1 must be added to PUBLIC knowingly, or put under /v1.
    assert unguarded == PUBLIC
    assert len(calls) >= 18, calls  # every operation of the API, listed from the app itself

    async def main() -> None:
        key_for(tmp_path, "acme")  # keys are configured
        async with asgi.router.lifespan_context(asgi):
            transport = httpx.ASGITransport(app=asgi)
            async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
                for method, path in calls:
                    for headers in ({}, {"Authorization": "Bearer cvy_00000000_not-a-key"}):
                        r = await c.request(method, path, headers=headers)
                        assert r.status_code == 401, (method, path, r.text)
                        assert r.headers["www-authenticate"].startswith("Bearer")
                r = await c.get("/healthz")
                assert r.status_code == 200
                assert r.json()["store"] == {"ok": True, "error": None}

    asyncio.run(main())


def test_ids_that_try_to_climb_out_of_the_tenants_folder_are_unknown(tmp_path):
    """A file or batch id with '..', a slash or a path of its own is unknown; nothing is touched."""
    # What a file looks like on disk, planted beside the tenants' folders: an id reaching it
    # would be taken for a file.
    planted = tmp_path / "files" / "planted.json"
    record = '{"id": "planted", "bytes": 2, "items": 1, "created_at": 0}'

    async def main() -> None:
        async with keyed_service(tmp_path) as c:
            acme = key_for(tmp_path, "acme")
            planted.parent.mkdir(parents=True, exist_ok=True)
            planted.write_text(record)
            planted.with_suffix(".jsonl").write_text("1\n")
            # The tenant's folder exists (a path through it would resolve).
            r = await c.post("/v1/files", content=b"1\n", headers=acme)
            assert r.status_code == 201, r.text
            for bad in ["..%2Fplanted", "file-..%2F..%2Fplanted", "..", "planted"]:
                for method, path in [
                    ("GET", f"/v1/files/{bad}"),
                    ("GET", f"/v1/files/{bad}/content"),
                    ("DELETE", f"/v1/files/{bad}"),
                    ("GET", f"/v1/batches/batch_{bad}"),
                    ("POST", f"/v1/batches/batch_{bad}/cancel"),
                ]:
                    r = await c.request(method, path, headers=acme)
                    assert r.status_code == 404, (method, path, r.text)
            for bad in [
                "../planted",
                "../../files/planted",
                "/etc/passwd",
                "file-" + "0" * 31 + "/",
            ]:
                r = await c.post(
                    "/v1/jobs", json={"task": "http:api", "file_id": bad}, headers=acme
                )
                assert r.status_code == 422, (bad, r.text)
                batch = {
                    "input_file_id": bad,
                    "endpoint": "/v1/chat/completions",
                    "completion_window": "24h",
                }
                r = await c.post("/v1/batches", json=batch, headers=acme)
                assert r.status_code == 400, (bad, r.text)
            assert planted.read_text() == record
            assert (await c.get("/v1/jobs", headers=acme)).json()["data"] == []
            assert (await c.get("/v1/batches", headers=acme)).json()["data"] == []

    asyncio.run(main())
