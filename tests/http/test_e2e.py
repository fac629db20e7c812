"""The batch run end to end over real sockets: the mock API, and tiny servers for odd answers.

Real time, on 127.0.0.1. No test waits for time to pass: the mock answers at once, and the rate
limit test uses a 0.2 s window so that it needs about half a second. That client limits keep
within a window is tested exactly on virtual time (test_batch.py), not here: on a busy machine,
real-time jitter between the client's clock and the server's could draw a 429 that says
nothing about the code.
"""

import asyncio
import json
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from conveyor import Retry
from conveyor.http import Batch, BatchFiles, BatchLimits, BatchResult, Endpoint, prepare
from conveyor.mockapi import Faults, MockAPI, MockConfig

from .helpers import id_counts, read_results, write_requests

SECRET = "Bearer sk-live-5ecret-0123456789"  # noqa: S105 - a made-up test value


async def run_against(
    tmp_path: Path,
    base_url: str,
    *,
    limits: BatchLimits | None = None,
    retry: Retry | None = None,
    secret: bool = False,
) -> tuple[Batch, BatchResult]:
    """Plan in.jsonl and run it against `base_url` with the run's own (aiohttp) transport."""
    files = BatchFiles(input=tmp_path / "in.jsonl", output=tmp_path / "out.jsonl")
    secrets = (("Authorization", SECRET),) if secret else ()
    plan = prepare(files, Endpoint(base_url=base_url, secret_headers=secrets))
    batch = Batch(plan, limits=limits or BatchLimits(concurrency=10), retry=retry or Retry())
    try:
        return batch, await batch.run()
    finally:
        plan.close()


def with_mock(config: MockConfig, body: Callable[[MockAPI], Awaitable[object]]) -> None:
    async def main() -> None:
        async with MockAPI(config) as api:
            await body(api)

    asyncio.run(main())


async def serve(handler: Callable[[web.Request], Awaitable[web.Response]]) -> web.AppRunner:
    """A one-route server on 127.0.0.1 answering every POST with `handler`."""
    app = web.Application()
    app.router.add_post("/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner


def url_of(runner: web.AppRunner) -> str:
    host, port = runner.addresses[0][:2]
    return f"http://{host}:{port}"


def test_requests_reach_the_mock_api_and_results_hold_its_answers(tmp_path: Path):
    """Chat requests are answered by the mock; each result holds the chat.completion, once."""
    ids = write_requests(tmp_path / "in.jsonl", 30)

    async def body(api: MockAPI) -> None:
        _, result = await run_against(tmp_path, api.base_url)
        assert result.summary.succeeded == 30
        assert api.stats().ok == 30

    with_mock(MockConfig(latency_ms=0), body)
    assert id_counts(tmp_path / "out.jsonl") == dict.fromkeys(ids, 1)
    record = read_results(tmp_path / "out.jsonl")[0]
    assert record["response"]["status_code"] == 200
    assert record["response"]["headers"]["content-type"] == "application/json"
    assert record["response"]["body"]["object"] == "chat.completion"
    assert record["error"] is None


def test_429s_from_a_strict_window_are_retried_and_all_succeed(tmp_path: Path):
    """Without client limits the mock's strict window answers 429s; all end succeeded anyway."""
    write_requests(tmp_path / "in.jsonl", 40)
    config = MockConfig(latency_ms=0, rpm=3000, window_s=0.2)  # 10 per any 0.2 s

    async def body(api: MockAPI) -> None:
        batch, result = await run_against(tmp_path, api.base_url, retry=Retry(attempts=20))
        assert result.summary.succeeded == 40
        rate_limited = api.stats().rate_limited
        assert rate_limited > 0
        assert batch.tally.rate_limited == rate_limited
        assert result.summary.retries == rate_limited

    with_mock(config, body)
    assert all(r["error"] is None for r in read_results(tmp_path / "out.jsonl"))


def test_500s_and_dropped_connections_are_retried(tmp_path: Path):
    """Server errors and connections closed without an answer are retried until they succeed."""
    ids = write_requests(tmp_path / "in.jsonl", 40)
    config = MockConfig(latency_ms=0, faults=Faults(fail_rate=0.15, drop_rate=0.15), seed=3)

    async def body(api: MockAPI) -> None:
        _, result = await run_against(
            tmp_path, api.base_url, retry=Retry(attempts=10, base_delay_s=0.001)
        )
        stats = api.stats()
        assert stats.errors_500 > 0
        assert stats.dropped > 0
        assert result.summary.succeeded == 40

    with_mock(config, body)
    assert id_counts(tmp_path / "out.jsonl") == dict.fromkeys(ids, 1)


def test_a_refused_connection_fails_each_item_with_the_reason(tmp_path: Path):
    """Nothing listening: every item is written as failed with the reason; the run ends."""
    ids = write_requests(tmp_path / "in.jsonl", 8)
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    _, result = asyncio.run(
        run_against(tmp_path, f"http://127.0.0.1:{port}", retry=Retry(attempts=1))
    )
    assert result.summary.failed == 8
    records = read_results(tmp_path / "out.jsonl")
    assert sorted(r["custom_id"] for r in records) == sorted(ids)
    for record in records:
        assert record["error"]["code"] in {"connection_error", "circuit_open"}
        assert f"cannot connect to 127.0.0.1:{port}" in record["error"]["message"]
        assert record["response"] is None


def test_a_non_json_answer_body_is_kept_as_text(tmp_path: Path):
    """An HTML error page and a plain-text success are kept as text, not lost."""
    write_requests(tmp_path / "in.jsonl", 2)

    async def handler(request: web.Request) -> web.Response:
        data = await request.json()
        if data["messages"][0]["content"] == "hello 0":
            return web.Response(text="plain answer", content_type="text/plain")
        return web.Response(status=400, text="<html>Bad</html>", content_type="text/html")

    async def main() -> None:
        runner = await serve(handler)
        try:
            await run_against(tmp_path, url_of(runner))
        finally:
            await runner.cleanup()

    asyncio.run(main())
    records = {r["custom_id"]: r for r in read_results(tmp_path / "out.jsonl")}
    assert records["req-0"]["response"]["body"] == "plain answer"
    assert records["req-0"]["error"] is None
    assert records["req-1"]["response"]["body"] == "<html>Bad</html>"
    assert records["req-1"]["error"] == {
        "code": "http_400",
        "message": "HTTP 400: <html>Bad</html>",
    }


def test_a_secret_header_reaches_the_server_and_never_the_results(tmp_path: Path):
    """The server sees the secret; the results do not, even when the server echoes it."""
    write_requests(tmp_path / "in.jsonl", 3)
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.headers["Authorization"])
        echo = {"authorization": request.headers["Authorization"]}
        return web.json_response(echo, headers={"x-request-id": SECRET[7:]})

    async def main() -> None:
        runner = await serve(handler)
        try:
            await run_against(tmp_path, url_of(runner), secret=True)
        finally:
            await runner.cleanup()

    asyncio.run(main())
    assert seen == [SECRET] * 3
    text = (tmp_path / "out.jsonl").read_text()
    assert "5ecret" not in text
    assert json.loads(text.splitlines()[0])["response"]["headers"]["x-request-id"] == "[redacted]"
