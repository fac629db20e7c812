"""The http task through an operator's connection.

Credentials from the environment reach the upstream and nothing else, and items cannot call
elsewhere, choose their host or bring their own credentials.
"""

import asyncio
import logging
from base64 import b64encode
from pathlib import Path
from urllib.parse import quote

import httpx
from aiohttp import web

from conveyor.jobs import App
from conveyor.service import Connection, ServiceConfig, create_app

from .conftest import FAST_WORKER

SECRET = "sk-test-0123456789abcdef"  # noqa: S105 - a made-up key the test hunts for


async def _upstream() -> tuple[web.AppRunner, str]:
    """A local API that echoes the caller's Authorization back: the worst case for leaks."""

    async def echo(request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        if request.path.endswith("/fail"):
            return web.json_response({"error": {"message": f"bad key {auth}"}}, status=400)
        return web.json_response({"you_sent": auth, "path": request.path})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


def test_connection_credentials_never_land_in_results_events_store_or_logs(tmp_path, caplog):
    """The upstream gets the env's key; results, errors, events, the DB and logs never hold it."""
    caplog.set_level(logging.DEBUG)
    db = tmp_path / "jobs.db"

    async def main() -> None:
        runner, base = await _upstream()
        cfg = ServiceConfig(
            store=f"sqlite:///{db}",
            keys_file=None,
            files_dir=tmp_path / "files",
            connections=(
                Connection(
                    name="api", base_url=f"{base}/v1", auth_env="API_KEY", requests_per_minute=6000
                ),
            ),
        )
        asgi = create_app(cfg, app=App(), environ={"API_KEY": SECRET}, worker_options=FAST_WORKER)
        try:
            async with asgi.router.lifespan_context(asgi):
                transport = httpx.ASGITransport(app=asgi)
                async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
                    items = [
                        {"custom_id": "a", "method": "POST", "url": "/ok", "body": {"x": 1}},
                        {"custom_id": "b", "method": "POST", "url": "/fail", "body": {}},
                    ]
                    r = await c.post("/v1/jobs", json={"task": "http:api", "items": items})
                    assert r.status_code == 202, r.text
                    job = r.json()
                    assert job["limits"] == [
                        {"limiter": "api", "unit": "requests", "per_second": 100.0}
                    ]
                    async with asyncio.timeout(5):
                        while job["status"] != "completed":
                            await asyncio.sleep(0.02)
                            job = (await c.get(f"/v1/jobs/{job['id']}")).json()
                    results = (await c.get(f"/v1/jobs/{job['id']}/results")).text
                    events = (await c.get(f"/v1/jobs/{job['id']}/events")).text
                    service = (await c.get("/v1/service")).json()
        finally:
            await runner.cleanup()
        # The upstream did get the key (it echoed it), but it was redacted before storing.
        assert '"you_sent": "[redacted]"' in results
        assert "bad key [redacted]" in results
        assert job["counts"] == {**job["counts"], "succeeded": 1, "failed": 1}
        for text in (results, events, str(service), caplog.text):
            assert SECRET not in text
        for path in tmp_path.glob("jobs.db*"):
            assert SECRET.encode() not in path.read_bytes(), path

    asyncio.run(main())


def test_items_may_not_leave_the_base_url_or_carry_credentials(tmp_path):
    """Another host, a climb out with '..', or an item's own Authorization: 422, nothing stored."""

    async def main() -> None:
        cfg = ServiceConfig(
            store="memory:",
            keys_file=None,
            files_dir=tmp_path,
            connections=(Connection(name="api", base_url="http://127.0.0.1:9/v1"),),
        )
        asgi = create_app(cfg, app=App(), worker=False)
        async with asgi.router.lifespan_context(asgi):
            transport = httpx.ASGITransport(app=asgi)
            async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
                line = {"custom_id": "a", "method": "GET", "body": None}
                for url, headers, expected in [
                    ("http://169.254.169.254/latest/meta-data", {}, "outside"),
                    ("http://127.0.0.1:9/v1/../admin", {}, "leaves"),
                    ("/v1/%2e%2e/admin", {}, "leaves"),
                    ("/v1/ok", {"Authorization": "Bearer mine"}, "may not carry credentials"),
                ]:
                    item = {**line, "url": url, "headers": headers}
                    r = await c.post("/v1/jobs", json={"task": "http:api", "items": [item]})
                    assert r.status_code == 422, url
                    assert expected in r.json()["detail"], r.json()["detail"]
                assert (await c.get("/v1/jobs")).json()["data"] == []

    asyncio.run(main())


def test_items_may_not_choose_their_host_or_how_they_are_framed(tmp_path):
    """Host, Forwarded, X-Forwarded-*, X-Real-IP, hop-by-hop headers in an item: 422, no job."""

    async def main() -> None:
        cfg = ServiceConfig(
            store="memory:",
            keys_file=None,
            files_dir=tmp_path,
            connections=(Connection(name="api", base_url="http://127.0.0.1:9/v1"),),
        )
        asgi = create_app(cfg, app=App(), worker=False)
        async with asgi.router.lifespan_context(asgi):
            transport = httpx.ASGITransport(app=asgi)
            async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
                line = {"custom_id": "a", "method": "POST", "url": "/v1/ok", "body": {}}
                for name in [
                    "Host",
                    "hOsT",
                    "Forwarded",
                    "X-Forwarded-For",
                    "X-Forwarded-Host",
                    "X-Real-IP",
                    "X-Original-URL",
                    "X-Rewrite-URL",
                    "Connection",
                    "Transfer-Encoding",
                    "Content-Length",
                    "Proxy-Connection",
                ]:
                    item = {**line, "headers": {"X-Team": "ok", name: "admin.internal"}}
                    r = await c.post("/v1/jobs", json={"task": "http:api", "items": [item]})
                    assert r.status_code == 422, name
                    assert r.headers["content-type"] == "application/problem+json"
                    detail = r.json()["detail"]
                    assert f"has the header {name}: a request may not choose" in detail, detail
                assert (await c.get("/v1/jobs")).json()["data"] == []

    asyncio.run(main())


def test_a_connection_whose_env_var_is_missing_is_refused_at_start(tmp_path):
    """The service does not start with a connection whose credential variable is unset."""
    import pytest

    from conveyor.errors import ConfigError

    cfg = ServiceConfig(
        store="memory:",
        keys_file=None,
        files_dir=tmp_path,
        connections=(Connection(name="api", base_url="https://api.example.com", auth_env="NOPE"),),
    )
    with pytest.raises(ConfigError, match="NOPE"):
        create_app(cfg, app=App(), environ={})


def test_config_files_are_read_and_checked(tmp_path: Path):
    """A TOML config gives limits and connections; an unknown key is named in the error."""
    import pytest

    from conveyor.errors import ConfigError
    from conveyor.service import load_config

    path = tmp_path / "c.toml"
    path.write_text(
        'store = "memory:"\n[limits]\nmax_items_per_job = 7\n'
        '[connections.openai]\nbase_url = "https://api.openai.com"\nauth_env = "K"\n'
    )
    cfg = load_config(path)
    assert cfg.limits.max_items_per_job == 7
    assert cfg.connections[0].task_name == "http:openai"
    path.write_text("stor = 1\n")
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(path)
    with pytest.raises(ConfigError, match="base_url"):
        Connection(name="x", base_url="ftp://host")


def test_a_key_echoed_encoded_lands_in_no_result_error_or_store_byte(tmp_path):
    """Echoed URL-encoded, JSON-escaped or in base64 (body, header, error page): all redacted."""
    secret = "sk-te/st+0123456789abcdef"  # noqa: S105 - a made-up key with characters to encode
    spellings = {
        "percent": quote(f"Bearer {secret}", safe=""),
        "escaped": "".join(f"\\u{ord(c):04x}" for c in secret),
        "base64": b64encode(f"Authorization: Bearer {secret}".encode()).decode(),
    }
    db = tmp_path / "jobs.db"

    async def echo(request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        shown = {
            "percent": quote(auth, safe=""),
            "escaped": "".join(f"\\u{ord(c):04x}" for c in auth.rpartition(" ")[2]),
            "base64": b64encode(f"Authorization: {auth}".encode()).decode(),
        }
        text = " ".join(f"{k}={v}" for k, v in shown.items())
        headers = {"x-request-id": shown["base64"]}
        status = 400 if request.path.endswith("/fail") else 200
        return web.Response(text=f"<p>{text}</p>", status=status, headers=headers)

    async def main() -> None:
        upstream = web.Application()
        upstream.router.add_route("*", "/{tail:.*}", echo)
        runner = web.AppRunner(upstream)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        cfg = ServiceConfig(
            store=f"sqlite:///{db}",
            keys_file=None,
            files_dir=tmp_path / "files",
            connections=(
                Connection(name="api", base_url=f"http://127.0.0.1:{port}/v1", auth_env="KEY"),
            ),
        )
        asgi = create_app(cfg, app=App(), environ={"KEY": secret}, worker_options=FAST_WORKER)
        try:
            async with asgi.router.lifespan_context(asgi):
                transport = httpx.ASGITransport(app=asgi)
                async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
                    items = [
                        {"custom_id": "a", "method": "GET", "url": "/ok", "body": None},
                        {"custom_id": "b", "method": "GET", "url": "/fail", "body": None},
                    ]
                    r = await c.post("/v1/jobs", json={"task": "http:api", "items": items})
                    assert r.status_code == 202, r.text
                    job = r.json()
                    async with asyncio.timeout(5):
                        while job["status"] != "completed":
                            await asyncio.sleep(0.02)
                            job = (await c.get(f"/v1/jobs/{job['id']}")).json()
                    results = (await c.get(f"/v1/jobs/{job['id']}/results")).text
        finally:
            await runner.cleanup()
        assert job["counts"] == {**job["counts"], "succeeded": 1, "failed": 1}
        assert results.count("[redacted]") >= 6, results
        stored = b"".join(path.read_bytes() for path in tmp_path.glob("jobs.db*"))
        for name, spelled in spellings.items():
            assert spelled not in results, name
            assert spelled.encode() not in stored, name

    asyncio.run(main())
