"""Redirects are answers, never followed: the credentials go to the base URL and nowhere else.

Real sockets on 127.0.0.1 (aiohttp servers), so these run in real time: each request is
answered at once, and nothing waits on a timer.
"""

import asyncio
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from conveyor.http.client import AiohttpTransport
from conveyor.http.errors import HTTPStatusError
from conveyor.http.http1 import Http1Transport
from conveyor.jobs.http_task import HttpJobTask

SECRET = "Bearer sk-redirect-0123456789"  # noqa: S105 - a made-up key the test hunts for


async def _server(handler: Any) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


async def _pair(status: int) -> tuple[list[web.AppRunner], str, list[str]]:
    """An API that redirects every request to another server, which notes what it got."""
    reached: list[str] = []

    async def elsewhere(request: web.Request) -> web.Response:
        reached.append(f"{request.method} {request.path} {request.headers.get('Authorization')}")
        return web.json_response({"stolen": request.headers.get("Authorization")})

    other, other_url = await _server(elsewhere)

    async def api(request: web.Request) -> web.Response:
        return web.Response(status=status, headers={"Location": f"{other_url}/steal"})

    runner, url = await _server(api)
    return [runner, other], url, reached


@pytest.mark.parametrize("client", ["http1", "aiohttp"])
@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_the_transport_reports_a_redirect_and_does_not_follow_it(status, client):
    """Every redirect status is the answer itself; the server it points to gets no request."""

    async def main() -> None:
        runners, url, reached = await _pair(status)
        try:
            if client == "http1":
                own = Http1Transport(connect_timeout_s=5.0)
                answer = await own("POST", f"{url}/v1/chat", {"Authorization": SECRET}, b"{}")
                await own.close()
            else:
                async with aiohttp.ClientSession() as session:
                    answer = await AiohttpTransport(session)(
                        "POST", f"{url}/v1/chat", {"Authorization": SECRET}, b"{}"
                    )
        finally:
            for runner in runners:
                await runner.cleanup()
        assert answer.status == status
        assert answer.headers["location"].endswith("/steal")
        assert reached == []

    asyncio.run(main())


def test_a_job_item_answered_with_a_redirect_fails_without_following_it():
    """The jobs' http task: a 307 fails the item as HTTP 307; the other host never sees the key."""

    async def main() -> None:
        runners, url, reached = await _pair(307)
        task = HttpJobTask(base_url=url, headers={"Authorization": SECRET}, name="http:api")

        class Ctx:
            job_id, index, attempt, idempotency_key, tenant = "j", 0, 0, "j/0", "acme"

        item = {"custom_id": "a", "method": "POST", "url": "/v1/chat", "body": {}}
        try:
            with pytest.raises(HTTPStatusError) as caught:
                await task(item, Ctx())  # type: ignore[arg-type]
        finally:
            await task.aclose()
            for runner in runners:
                await runner.cleanup()
        assert caught.value.status_code == 307
        assert reached == []

    asyncio.run(main())
