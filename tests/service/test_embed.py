"""The job service mounted in a FastAPI app: the host's lifespan, prefixed links, CORS.

In-process (ASGI): the host app and the mounted service in one event loop, driven by httpx.
Each wait polls the job, bounded by 5 s, far above the milliseconds these jobs take.
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from conveyor.errors import ConfigError
from conveyor.jobs import MemoryStore
from conveyor.service import JobService, ServiceConfig, create_app, load_config
from conveyor.service.config import Limits
from conveyor.service.stream_tokens import RedactTokens

from .conftest import FAST_WORKER, key_for, make_app

FRONT = "http://front.example:5173"
EVIL = "http://evil.example"


def config(tmp_path: Path, *, keys: bool = False, origins: tuple[str, ...] = ()) -> ServiceConfig:
    return ServiceConfig(
        store="memory:",
        keys_file=(tmp_path / "keys.json") if keys else None,
        files_dir=tmp_path / "files",
        limits=Limits(),
        events_interval_s=0.05,
        cors_origins=origins,
    )


def service(cfg: ServiceConfig) -> JobService:
    return create_app(cfg, app=make_app(), store=MemoryStore(), worker_options=FAST_WORKER)


@contextlib.asynccontextmanager
async def host_client(host: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the host app, with the host's lifespan running (as uvicorn runs it)."""
    async with host.router.lifespan_context(host):
        transport = httpx.ASGITransport(app=host)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
            yield c


async def until_done(c: httpx.AsyncClient, url: str, **kw: Any) -> dict[str, Any]:
    async with asyncio.timeout(5):
        while True:
            job: dict[str, Any] = (await c.get(url, **kw)).json()
            if job["status"] in {"completed", "failed", "cancelled"}:
                return job
            await asyncio.sleep(0.02)


def test_mounted_with_the_hosts_lifespan_jobs_run_and_links_carry_the_prefix(tmp_path):
    """FastAPI(lifespan=jobs_api.lifespan), mounted at /jobs: 202, links under /jobs, done."""
    jobs_api = service(config(tmp_path))
    host = FastAPI(lifespan=jobs_api.lifespan)

    @host.get("/hello")
    async def say_hello() -> dict[str, str]:
        return {"hello": "world"}

    host.mount("/jobs", jobs_api)

    async def main() -> tuple[httpx.Response, dict[str, Any], dict[str, Any], Any]:
        async with host_client(host) as c:
            posted = await c.post("/jobs/v1/jobs", json={"task": "echo", "items": [1, 2]})
            done = await until_done(c, posted.json()["links"]["self"])
            openapi = (await c.get("/jobs/openapi.json")).json()
            return posted, done, openapi, (await c.get("/hello")).json()

    posted, done, openapi, hello = asyncio.run(main())
    assert posted.status_code == 202
    job_id = posted.json()["id"]
    assert posted.headers["location"] == f"/jobs/v1/jobs/{job_id}"
    assert done["links"] == {
        "self": f"/jobs/v1/jobs/{job_id}",
        "events": f"/jobs/v1/jobs/{job_id}/events",
        "results": f"/jobs/v1/jobs/{job_id}/results",
        "cancel": f"/jobs/v1/jobs/{job_id}/cancel",
        "retry": f"/jobs/v1/jobs/{job_id}/retry",
        "stream_token": f"/jobs/v1/jobs/{job_id}/stream-token",
    }
    assert (done["status"], done["counts"]["succeeded"]) == ("completed", 2)
    assert openapi["servers"] == [{"url": "/jobs"}]
    assert hello == {"hello": "world"}


def test_the_lifespan_composes_into_the_hosts_own_and_runs_once(tmp_path):
    """``async with jobs_api.lifespan():`` in the host's; twice at once: an error; logs redacted."""
    jobs_api = service(config(tmp_path))
    entered: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        entered.append("host")
        async with jobs_api.lifespan():
            yield

    host = FastAPI(lifespan=lifespan)
    host.mount("/jobs", jobs_api)

    def redacting() -> bool:
        return any(isinstance(f, RedactTokens) for f in logging.getLogger("uvicorn.access").filters)

    async def main() -> dict[str, Any]:
        async with host_client(host) as c:
            assert redacting()  # a stream token in the host's access log shows redacted
            with pytest.raises(RuntimeError, match="running already"):
                async with jobs_api.lifespan():
                    pass
            posted = await c.post("/jobs/v1/jobs", json={"task": "echo", "items": [1]})
            return await until_done(c, posted.json()["links"]["self"])

    done = asyncio.run(main())
    assert not redacting()
    assert entered == ["host"]
    assert done["status"] == "completed"


def test_mounted_without_its_lifespan_it_says_so_instead_of_queueing_forever(tmp_path):
    """A host that never runs the service's lifespan gets a 503 naming the fix, no job."""
    jobs_api = service(config(tmp_path))
    host = FastAPI()
    host.mount("/jobs", jobs_api)

    async def main() -> httpx.Response:
        async with host_client(host) as c:
            return await c.post("/jobs/v1/jobs", json={"task": "echo", "items": [1]})

    answer = asyncio.run(main())
    assert answer.status_code == 503
    assert "lifespan" in answer.json()["detail"]
    assert "add-jobs-to-a-fastapi-app" in answer.json()["detail"]


def test_the_dashboard_loads_its_assets_under_the_mount(tmp_path):
    """/jobs redirects to /jobs/, whose page names its assets relative: /jobs/static/..."""
    jobs_api = service(config(tmp_path))
    host = FastAPI(lifespan=jobs_api.lifespan)
    host.mount("/jobs", jobs_api)

    async def main() -> tuple[httpx.Response, httpx.Response, httpx.Response]:
        async with host_client(host) as c:
            bare = await c.get("/jobs")
            page = await c.get("/jobs/")
            script = await c.get("/jobs/static/app.js")
            return bare, page, script

    bare, page, script = asyncio.run(main())
    assert bare.status_code in {307, 308}
    assert bare.headers["location"].endswith("/jobs/")
    assert 'src="static/app.js"' in page.text
    assert 'href="static/style.css"' in page.text
    assert "/static/" not in page.text.replace('"static/', "")
    assert script.status_code == 200
    assert "fetch(here(path)" in script.text


def test_cors_grants_only_the_configured_origins_errors_included(tmp_path):
    """A preflight from the front end is granted; another origin's is not; a 401 is readable."""
    jobs_api = service(config(tmp_path, keys=True, origins=(FRONT,)))
    key_for(tmp_path, "web")
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }

    async def main() -> list[httpx.Response]:
        async with jobs_api.lifespan():
            transport = httpx.ASGITransport(app=jobs_api)
            async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
                return [
                    await c.options("/v1/jobs", headers={"Origin": FRONT, **preflight}),
                    await c.options("/v1/jobs", headers={"Origin": EVIL, **preflight}),
                    await c.get("/v1/jobs", headers={"Origin": FRONT}),
                    await c.get("/v1/jobs", headers={"Origin": EVIL}),
                ]

    granted, refused, unauthorized, foreign = asyncio.run(main())
    assert granted.status_code == 200
    assert granted.headers["access-control-allow-origin"] == FRONT
    assert "authorization" in granted.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in granted.headers
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers
    assert unauthorized.status_code == 401
    assert unauthorized.headers["access-control-allow-origin"] == FRONT
    assert "access-control-allow-origin" not in foreign.headers


@pytest.mark.parametrize(
    ("origin", "message"),
    [
        ("*", "a wildcard lets every web page"),
        ("http://localhost:5173/", "with no path"),
        ("localhost:5173", "pass scheme://host[:port]"),
        ("ftp://files.example", "pass scheme://host[:port]"),
        ("https://user@app.example", "pass scheme://host[:port]"),
    ],
)
def test_a_cors_origin_that_is_not_one_is_refused_saying_what_to_pass(origin, message):
    """No wildcard, no path, an http(s) scheme: each refusal names the value and the fix."""
    with pytest.raises(ConfigError, match="cors origin") as refused:
        ServiceConfig(cors_origins=(origin,))
    assert message in str(refused.value)


def test_cors_origins_come_from_the_config_file_and_the_serve_flag(tmp_path):
    """``[cors] origins = [...]`` in TOML, plus each ``--cors-origin`` of ``conveyor serve``."""
    from conveyor.cli import build_parser
    from conveyor.cli.serve import _config

    path = tmp_path / "conveyor.toml"
    path.write_text('[cors]\norigins = ["https://App.example.com"]\n', encoding="utf-8")
    assert load_config(path).cors_origins == ("https://app.example.com",)
    args = build_parser().parse_args(
        ["serve", "--config", str(path), "--cors-origin", "http://localhost:5173"]
    )
    assert _config(args).cors_origins == ("https://app.example.com", "http://localhost:5173")
    path.write_text('[cors]\norigin = ["https://app.example.com"]\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"\[cors\] takes only origins"):
        load_config(path)


def test_without_cors_origins_no_answer_grants_another_origin(tmp_path):
    """The default: no CORS at all (a preflight is 405), as before."""
    jobs_api = service(config(tmp_path))

    async def main() -> httpx.Response:
        async with jobs_api.lifespan():
            transport = httpx.ASGITransport(app=jobs_api)
            async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
                headers = {"Origin": FRONT, "Access-Control-Request-Method": "POST"}
                return await c.options("/v1/jobs", headers=headers)

    answer = asyncio.run(main())
    assert answer.status_code == 405
    assert not [h for h in answer.headers if h.startswith("access-control-")]
