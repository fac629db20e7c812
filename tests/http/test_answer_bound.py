"""One answer's body is bounded in every transport: as sent, as decoded, and when endless.

An aiohttp server on 127.0.0.1 plays a broken or hostile API; the bound is patched down to
1 MiB so that the tests send megabytes. Real sockets, answered at once: nothing waits on a timer.
"""

import asyncio
import gzip
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from conveyor.http import client, http1
from conveyor.http.client import AiohttpTransport, RawAnswer
from conveyor.http.errors import AnswerTooLarge
from conveyor.http.http1 import Http1Transport
from conveyor.policy.classify import classify

from .test_redirects import _server

MIB = 2**20


@pytest.fixture(autouse=True)
def one_mib(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client, "MAX_BODY_BYTES", MIB)
    monkeypatch.setattr(http1, "MAX_BODY_BYTES", MIB)


async def _endless(request: web.Request) -> web.StreamResponse:
    answer = web.StreamResponse()
    await answer.prepare(request)
    for _ in range(64):  # 4 MiB at most: bounded, should the client never stop reading
        await answer.write(b"a" * 65536)
    return answer


async def _bomb(_: web.Request) -> web.Response:
    packed = gzip.compress(b"\0" * 32 * MIB)
    return web.Response(body=packed, headers={"Content-Encoding": "gzip"})


async def _declared(_: web.Request) -> web.Response:
    # A head that says 5 GB; the body never comes.
    return web.Response(body=b"{}", headers={"Content-Length": "5000000000"})


async def _at_the_bound(request: web.Request) -> web.Response:
    body = bytes(range(256)) * (MIB // 256)
    if request.path.endswith("/gzip"):
        return web.Response(body=gzip.compress(body), headers={"Content-Encoding": "gzip"})
    return web.Response(body=body)


async def _call(kind: str, handler: Any, path: str = "/") -> RawAnswer | Exception:
    runner, base = await _server(handler)
    url = f"{base}{path}"
    try:
        if kind == "reqwest":
            from conveyor.http.reqwest import ReqwestTransport, open_client

            reqwest = ReqwestTransport(open_client(4, connect_timeout_s=5.0))
            try:
                return await reqwest("GET", url, {}, None)
            except Exception as exc:
                return exc
        if kind == "http1":
            own = Http1Transport(connect_timeout_s=5.0)
            try:
                return await own("GET", url, {"Accept-Encoding": "gzip"}, None)
            except Exception as exc:
                return exc
            finally:
                await own.close()
        async with aiohttp.ClientSession() as session:
            try:
                return await AiohttpTransport(session)("GET", url, {}, None)
            except Exception as exc:
                return exc
    finally:
        await runner.cleanup()


def _run(kind: str, handler: Any, path: str = "/") -> RawAnswer | Exception:
    return asyncio.run(asyncio.wait_for(_call(kind, handler, path), 20))


#: pyreqwest waits out an announced body that never comes when its streamed answer closes,
#: refused or not (the attempt's timeout ends that wait): its length case is left out.
_PAST = [
    (kind, handler, how)
    for kind in ("http1", "aiohttp", "reqwest")
    for handler, how in (
        (_endless, "it went on past that"),
        (_bomb, "decodes to more"),
        (_declared, "its Content-Length says 5,000,000,000 bytes"),
    )
    if not (kind == "reqwest" and handler is _declared)
]


@pytest.mark.parametrize(("kind", "handler", "how"), _PAST)
def test_an_answer_past_the_bound_fails_its_request_and_is_not_retried(kind, handler, how):
    """Endless, a gzip of 32 MiB of zeros (32 KiB sent), or a length of 5 GB: refused."""
    failed = _run(kind, handler)
    if kind != "http1" and handler is _bomb:
        how = "went on past that"  # handed over decoded, chunk by chunk
    assert isinstance(failed, AnswerTooLarge), failed
    assert "larger than Conveyor takes from one answer, 1 MiB" in str(failed)
    assert how in str(failed)
    assert classify(failed).kind == "permanent"


@pytest.mark.parametrize("kind", ["http1", "aiohttp", "reqwest"])
@pytest.mark.parametrize("path", ["/plain", "/gzip"])
def test_an_answer_at_the_bound_comes_back_whole(kind, path):
    answer = _run(kind, _at_the_bound, path)
    assert isinstance(answer, RawAnswer), answer
    assert answer.body == bytes(range(256)) * (MIB // 256)
