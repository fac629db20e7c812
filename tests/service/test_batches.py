"""OpenAI's Batch API served by Conveyor, driven by the official ``openai`` package, unmodified.

The service runs in-process (ASGI, its worker in the same event loop) and its one connection
is the project's mock API on 127.0.0.1 (real sockets, so real time): latencies are 1 ms (50 ms
where a batch must still be running when it is cancelled), every wait polls the batch every
20 ms, bounded by 10 s, far above the tenths of a second these batches take.
"""

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

import httpx2
import openai
import pytest

from conveyor import _clock
from conveyor.jobs import App, MemoryStore
from conveyor.mockapi import MockAPI, MockConfig
from conveyor.service import ServiceConfig, create_app
from conveyor.service.batches import check_input
from conveyor.service.config import Connection, Limits

from .conftest import FAST_WORKER

CHAT: Literal["/v1/chat/completions"] = "/v1/chat/completions"


def line(custom_id: str, content: str = "hello", **body: Any) -> dict[str, Any]:
    messages = [{"role": "user", "content": content}] if content else []
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": CHAT,
        "body": {"model": "mock-1", "messages": messages, **body},
    }


def jsonl(lines: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(x) + "\n" for x in lines).encode()


@contextlib.asynccontextmanager
async def service(
    tmp_path: Path,
    latency_ms: float = 1.0,
    sweep_s: float = 5.0,
    service_limits: Limits | None = None,
    worker: bool = True,
    store: MemoryStore | None = None,
    **limits: float,
) -> AsyncIterator[openai.AsyncOpenAI]:
    """The official client on the service, whose connection is the mock API."""
    async with MockAPI(MockConfig(latency_ms=latency_ms)) as upstream:
        cfg = ServiceConfig(
            store="memory:",
            keys_file=None,
            files_dir=tmp_path / "files",
            connections=(Connection(name="mock", base_url=upstream.base_url, **limits),),  # type: ignore[arg-type]
            batch_sweep_s=sweep_s,
            limits=service_limits or Limits(),
        )
        asgi = create_app(
            cfg,
            app=App(),
            store=store or MemoryStore(),
            worker=worker,
            worker_options=FAST_WORKER,
        )
        async with asgi.router.lifespan_context(asgi):
            http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=asgi))
            client = openai.AsyncOpenAI(
                api_key="unused", base_url="http://localhost/v1", http_client=http
            )
            try:
                yield client
            finally:
                await client.close()


async def until(client: openai.AsyncOpenAI, batch_id: str, *statuses: str) -> Any:
    async with asyncio.timeout(10):
        while True:
            batch = await client.batches.retrieve(batch_id)
            if batch.status in statuses:
                return batch
            await asyncio.sleep(0.02)


async def _started(client: openai.AsyncOpenAI, batch_id: str) -> bool:
    counts = (await client.batches.retrieve(batch_id)).request_counts
    return counts is not None and counts.completed > 0


async def upload(client: openai.AsyncOpenAI, data: bytes) -> str:
    file = await client.files.create(file=("batch.jsonl", data), purpose="batch")
    return file.id


def test_a_batch_runs_to_completion_with_output_and_error_files(tmp_path):
    """Upload, create, poll to completed, download both files: every request accounted for."""
    lines = [line(f"r{i}", f"question {i}") for i in range(20)]
    lines.append(line("bad", content=""))  # the upstream answers 400: not retried

    async def main() -> Any:
        async with service(tmp_path) as client:
            file_id = await upload(client, jsonl(lines))
            info = await client.files.retrieve(file_id)
            batch = await client.batches.create(
                input_file_id=file_id,
                endpoint=CHAT,
                completion_window="24h",
                metadata={"project": "test"},
            )
            assert batch.status == "in_progress"
            done = await until(client, batch.id, "completed", "failed")
            output = (await client.files.content(done.output_file_id)).text
            errors = (await client.files.content(done.error_file_id)).text
            return info, done, output, errors

    info, done, output, errors = asyncio.run(main())
    assert (info.purpose, info.filename, info.status) == ("batch", "batch.jsonl", "processed")
    assert done.status == "completed"
    assert done.metadata == {"project": "test"}
    counts = done.request_counts
    assert counts is not None
    assert (counts.total, counts.completed, counts.failed) == (21, 20, 1)
    out = [json.loads(x) for x in output.splitlines()]
    assert sorted(x["custom_id"] for x in out) == sorted(f"r{i}" for i in range(20))
    first = next(x for x in out if x["custom_id"] == "r0")
    assert first["response"]["status_code"] == 200
    assert first["response"]["body"]["object"] == "chat.completion"
    assert first["error"] is None
    (err,) = [json.loads(x) for x in errors.splitlines()]
    assert (err["custom_id"], err["response"], err["error"]["code"]) == ("bad", None, "http_400")


def test_a_token_limited_connection_paces_a_batch_by_its_requests_estimates(tmp_path):
    """With tokens_per_minute, each item's estimate is its cost: the batch completes."""
    lines = [line(f"r{i}", "x" * 40, max_tokens=10) for i in range(5)]  # 20 tokens each

    async def main() -> Any:
        async with service(tmp_path, tokens_per_minute=6_000, window_s=60.0) as client:
            file_id = await upload(client, jsonl(lines))
            batch = await client.batches.create(
                input_file_id=file_id, endpoint=CHAT, completion_window="24h"
            )
            return await until(client, batch.id, "completed", "failed")

    done = asyncio.run(main())
    assert done.status == "completed"
    assert done.request_counts is not None
    assert done.request_counts.completed == 5


def test_a_malformed_file_makes_a_failed_batch_with_per_line_errors(tmp_path):
    """Bad JSON, a duplicate custom_id and a wrong url: failed, one error per line, no 5xx."""
    data = jsonl([line("a")]) + b"{not json\n" + jsonl([line("a"), {**line("c"), "url": "/x"}])

    async def main() -> Any:
        async with service(tmp_path) as client:
            file_id = await upload(client, data)
            batch = await client.batches.create(
                input_file_id=file_id, endpoint=CHAT, completion_window="24h"
            )
            return batch, await client.batches.retrieve(batch.id)

    created, again = asyncio.run(main())
    assert created.status == again.status == "failed"
    assert again.errors is not None
    found = [(e.line, e.code) for e in again.errors.data or []]
    assert found == [
        (2, "invalid_json_line"),
        (3, "duplicate_custom_id"),
        (4, "mismatched_endpoint"),
    ]


def test_hostile_lines_make_a_failed_batch_with_an_error_per_line_never_a_4xx_or_5xx(tmp_path):
    """NaN, Infinity, a lone surrogate, over 1 MiB, not JSON, 100,000 deep: each its own error."""
    good = json.dumps(line("a")).encode()
    bad = [
        json.dumps(line("b")).replace('"hello"', "NaN").encode(),
        json.dumps(line("c")).replace('"hello"', "-Infinity").encode(),
        json.dumps(line("d")).replace("hello", "\\ud800").encode(),
        json.dumps(line("e", "x" * (1 << 20))).encode(),
        b"{not json",
        b"[" * 100_000,
    ]
    data = b"\n".join([good, *bad, json.dumps(line("f")).encode()]) + b"\n"

    async def main() -> Any:
        async with service(tmp_path) as client:
            file_id = await upload(client, data)
            batch = await client.batches.create(
                input_file_id=file_id, endpoint=CHAT, completion_window="24h"
            )
            return batch, await client.batches.retrieve(batch.id)

    created, again = asyncio.run(main())
    assert created.status == again.status == "failed"
    assert again.errors is not None
    errors = {e.line: (e.code, e.message) for e in again.errors.data or []}
    assert sorted(errors) == [2, 3, 4, 5, 6, 7]
    column = bad[0].index(b"NaN") + 1
    assert errors[2] == (
        "invalid_json_line",
        (
            f"Line 2 is not valid JSON: NaN at column {column} is not a JSON number; write null"
            " or a string."
        ),
    )
    assert errors[3][1].startswith(f"Line 3 is not valid JSON: -Infinity at column {column} ")
    assert errors[4][1].startswith(
        f"Line 4 is not valid JSON: a lone surrogate \\ud800 at column {column + 1} is not valid"
        " Unicode"
    )
    assert errors[5] == (
        "line_too_large",
        (
            "Line 5 is over 1,048,576 bytes, the largest request a batch takes: shorten it, or"
            " send it another way"
        ),
    )
    assert errors[6][1].startswith("Line 6 is not valid JSON: ")
    assert errors[7] == (
        "invalid_json_line",
        "Line 7 nests arrays and objects more than 128 deep, the most accepted: flatten it.",
    )
    assert again.request_counts is not None
    assert again.request_counts.total == 8


def test_an_item_the_job_refuses_after_the_check_fails_the_batch_naming_its_line(tmp_path):
    """A line under 1 MiB whose item is over it once stored (1e9 reads 1000000000.0): per line."""
    numbers = ", ".join(["1e9"] * 200_000)
    grows = f'{{"custom_id": "b", "method": "POST", "url": "{CHAT}", "body": {{"x": [{numbers}]}}}}'
    data = jsonl([line("a")]) + grows.encode() + b"\n"
    assert len(grows) < 1 << 20

    async def main() -> Any:
        async with service(tmp_path) as client:
            file_id = await upload(client, data)
            return await client.batches.create(
                input_file_id=file_id, endpoint=CHAT, completion_window="24h"
            )

    batch = asyncio.run(main())
    assert batch.status == "failed"
    assert batch.errors is not None
    (error,) = batch.errors.data or []
    assert (error.line, error.code) == (2, "invalid_request")
    assert error.message is not None
    assert error.message.startswith("Line 2 is ")
    assert "bytes of JSON, over max_item_bytes=1,048,576" in error.message


def test_a_batch_body_that_is_not_usable_json_is_a_400_naming_the_problem(tmp_path):
    """A /v1/batches body 100,000 deep, with NaN, or cut short: OpenAI's 400, never a 500."""

    async def main() -> list[httpx2.Response]:
        async with service(tmp_path) as client:
            http = client._client  # the same ASGI transport, for raw bodies
            bodies = [b"[" * 100_000, b'{"endpoint": NaN}', b'{"endpoint": "/v1/chat']
            return [
                await http.post(
                    "http://localhost/v1/batches",
                    content=body,
                    headers={"Content-Type": "application/json"},
                )
                for body in bodies
            ]

    deep, nan, cut = asyncio.run(main())
    assert [r.status_code for r in (deep, nan, cut)] == [400, 400, 400]
    assert deep.json()["error"]["message"] == (
        "the body nests arrays and objects more than 128 deep, the most accepted: flatten it"
    )
    assert nan.json()["error"]["message"].startswith("the body is not valid JSON: NaN at column")
    assert cut.json()["error"]["message"] == "the body is not valid JSON: it ends too early"


def test_a_line_choosing_its_host_or_bringing_credentials_fails_its_batch(tmp_path):
    """Host, X-Forwarded-*, Connection or Authorization in a line's headers: that line's error."""
    lines = [
        line("a"),
        {**line("b"), "headers": {"Host": "admin.internal"}},
        {**line("c"), "headers": {"X-Forwarded-Host": "admin.internal"}},
        {**line("d"), "headers": {"connection": "close"}},
        {**line("e"), "headers": {"Authorization": "Bearer mine"}},
        {**line("f"), "headers": {"X-Team": "ok"}},
    ]

    async def main() -> Any:
        async with service(tmp_path) as client:
            file_id = await upload(client, jsonl(lines))
            return await client.batches.create(
                input_file_id=file_id, endpoint=CHAT, completion_window="24h"
            )

    batch = asyncio.run(main())
    assert batch.status == "failed"
    assert batch.errors is not None
    found = {e.line: (e.code, e.param, e.message) for e in batch.errors.data or []}
    assert sorted(found) == [2, 3, 4, 5]
    assert {code for code, _, _ in found.values()} == {"invalid_value"}
    assert {param for _, param, _ in found.values()} == {"headers"}
    assert (found[2][2] or "").startswith("Line 2 has the header Host: a request may not choose")
    assert "X-Forwarded-Host" in (found[3][2] or "")
    assert "connection" in (found[4][2] or "")
    assert "may not carry credentials" in (found[5][2] or "")


def test_batches_count_against_the_tenants_active_jobs_limit_even_created_at_once(tmp_path):
    """Limit 3, one job active: of 6 batches created at once, 2 are made; the rest are 429s."""

    async def main() -> Any:
        limits = Limits(max_active_jobs_per_tenant=3)
        async with service(tmp_path, service_limits=limits, worker=False) as retrying:
            client = retrying.with_options(max_retries=0)  # a 429 is answered, not retried
            file_id = await upload(client, jsonl([line("a")]))
            first = await client.batches.create(
                input_file_id=file_id, endpoint=CHAT, completion_window="24h"
            )

            async def create() -> Any:
                try:
                    return await client.batches.create(
                        input_file_id=file_id, endpoint=CHAT, completion_window="24h"
                    )
                except openai.RateLimitError as exc:
                    return exc

            answers = await asyncio.gather(*(create() for _ in range(6)))
            listed = [b async for b in client.batches.list()]
            return first, answers, listed

    first, answers, listed = asyncio.run(main())
    made = [a for a in answers if not isinstance(a, openai.RateLimitError)]
    refused = [a for a in answers if isinstance(a, openai.RateLimitError)]
    assert (len(made), len(refused)) == (2, 4)
    for exc in refused:
        assert exc.status_code == 429
        assert "has 3 active jobs" in exc.message
        assert "max_active_jobs_per_tenant=3" in exc.message
    # A refused batch leaves nothing behind: the list holds the batches that were made.
    assert {b.id for b in listed} == {first.id, *(b.id for b in made)}


def test_batches_are_listed_newest_first_a_page_at_a_time(tmp_path):
    """GET /v1/batches pages with after and limit, as the SDK's auto-pagination expects."""

    async def main() -> Any:
        async with service(tmp_path) as client:
            file_id = await upload(client, jsonl([line("a")]))
            made = []
            for _ in range(3):
                batch = await client.batches.create(
                    input_file_id=file_id, endpoint=CHAT, completion_window="24h"
                )
                made.append(batch.id)
            first = await client.batches.list(limit=2)
            every = [b.id async for b in client.batches.list(limit=2)]
            return made, first, every

    made, first, every = asyncio.run(main())
    assert [b.id for b in first.data] == made[::-1][:2]
    assert first.has_more
    assert every == made[::-1]


def test_cancelling_mid_way_keeps_what_finished_and_cancels_the_rest(tmp_path):
    """Cancel while running: cancelled, the finished answers in the output, the rest errors."""
    lines = [line(f"r{i}", f"q {i}") for i in range(400)]

    async def main() -> Any:
        async with service(tmp_path, latency_ms=50.0) as client:
            file_id = await upload(client, jsonl(lines))
            batch = await client.batches.create(
                input_file_id=file_id, endpoint=CHAT, completion_window="24h"
            )
            async with asyncio.timeout(10):
                while not await _started(client, batch.id):  # noqa: ASYNC110 - polls the API
                    await asyncio.sleep(0.02)
            cancelling = await client.batches.cancel(batch.id)
            done = await until(client, batch.id, "cancelled")
            errors = (await client.files.content(done.error_file_id)).text
            return cancelling, done, errors

    cancelling, done, errors = asyncio.run(main())
    assert cancelling.status in {"cancelling", "cancelled"}
    counts = done.request_counts
    assert counts is not None
    assert 0 < counts.completed < 400
    codes = {json.loads(x)["error"]["code"] for x in errors.splitlines()}
    assert codes == {"batch_cancelled"}
    assert len(errors.splitlines()) == 400 - counts.completed


def test_files_are_deleted_and_missing_ones_are_404(tmp_path):
    """DELETE removes a file; reading it afterwards is the SDK's NotFoundError."""

    async def main() -> Any:
        async with service(tmp_path) as client:
            file_id = await upload(client, jsonl([line("a")]))
            deleted = await client.files.delete(file_id)
            with pytest.raises(openai.NotFoundError):
                await client.files.retrieve(file_id)
            with pytest.raises(openai.NotFoundError):
                await client.batches.retrieve("batch_0123")
            return deleted

    assert asyncio.run(main()).deleted


def test_the_input_check_counts_requests_and_names_an_empty_file():
    """An empty file is one error; blank lines are not requests."""
    assert check_input([b"\n", b"  \n"], CHAT) == (
        0,
        [{"code": "empty_file", "message": "The batch input file is empty.", "param": None,
          "line": 1}],
    )  # fmt: skip


def test_a_batch_past_its_completion_window_expires_and_its_unfinished_requests_error(
    tmp_path, monkeypatch
):
    """Past its window: expired, expired_at set, finished answers kept, the rest batch_expired."""
    lines = [line(f"r{i}", f"q {i}") for i in range(400)]
    real_wall = _clock.wall

    async def main() -> Any:
        async with service(tmp_path, latency_ms=50.0) as client:
            file_id = await upload(client, jsonl(lines))
            batch = await client.batches.create(
                input_file_id=file_id, endpoint=CHAT, completion_window="24h"
            )
            async with asyncio.timeout(10):
                while not await _started(client, batch.id):  # noqa: ASYNC110 - polls the API
                    await asyncio.sleep(0.02)
            # A day and a second later, as the batch's records see it: no waiting in real time.
            monkeypatch.setattr(_clock, "wall", lambda: real_wall() + 86_401)
            first = await client.batches.retrieve(batch.id)
            done = await until(client, batch.id, "expired")
            errors = (await client.files.content(done.error_file_id)).text
            output = (await client.files.content(done.output_file_id)).text
            return batch, first, done, errors, output

    batch, first, done, errors, output = asyncio.run(main())
    assert batch.expires_at == batch.created_at + 86_400
    assert first.status in {"finalizing", "expired"}
    assert done.expired_at is not None
    assert done.expired_at >= batch.created_at + 86_400
    counts = done.request_counts
    assert counts is not None
    assert 0 < counts.completed < 400
    assert len(output.splitlines()) == counts.completed
    codes = {json.loads(x)["error"]["code"] for x in errors.splitlines()}
    assert codes == {"batch_expired"}
    assert len(errors.splitlines()) == 400 - counts.completed


def test_a_batch_nobody_reads_expires_by_the_services_sweep(tmp_path, monkeypatch):
    """Past its window and never read: the sweep cancels its job and ends it expired, with files.

    The sweep runs every 20 ms; the wait for it reads the record in the store (never the API,
    whose reads would expire the batch themselves), every 20 ms, bounded by 10 s.
    """
    lines = [line(f"r{i}", f"q {i}") for i in range(400)]
    real_wall = _clock.wall
    store = MemoryStore()

    async def on_disk() -> dict[str, Any]:
        [row] = await store.files.batches("default", "openai")
        return json.loads(row.record)  # type: ignore[no-any-return]

    async def main() -> Any:
        async with service(tmp_path, latency_ms=50.0, sweep_s=0.02, store=store) as client:
            file_id = await upload(client, jsonl(lines))
            batch = await client.batches.create(
                input_file_id=file_id, endpoint=CHAT, completion_window="24h"
            )
            async with asyncio.timeout(10):
                while not await _started(client, batch.id):  # noqa: ASYNC110 - polls the API
                    await asyncio.sleep(0.02)
            before = await on_disk()
            monkeypatch.setattr(_clock, "wall", lambda: real_wall() + 86_401)
            async with asyncio.timeout(10):
                while (await on_disk())["status"] != "expired":  # noqa: ASYNC110 - polls the record
                    await asyncio.sleep(0.02)
            done = await client.batches.retrieve(batch.id)
            assert done.error_file_id is not None
            errors = (await client.files.content(done.error_file_id)).text
            return before, done, errors

    before, done, errors = asyncio.run(main())
    assert before["status"] == "in_progress"
    assert "expired_at" not in before["times"]
    assert done.status == "expired"
    assert done.expired_at is not None
    counts = done.request_counts
    assert counts is not None
    assert counts.completed < 400
    codes = {json.loads(x)["error"]["code"] for x in errors.splitlines()}
    assert codes == {"batch_expired"}
    assert len(errors.splitlines()) == 400 - counts.completed


def test_files_are_listed_by_purpose_newest_first_a_page_at_a_time(tmp_path):
    """GET /v1/files filters by purpose and pages with after and limit, as the SDK expects."""

    async def main() -> Any:
        async with service(tmp_path) as client:
            made = [await upload(client, jsonl([line(f"a{i}")])) for i in range(3)]
            other = await client.files.create(file=("u.jsonl", b"{}\n"), purpose="user_data")
            batch_files = [f.id async for f in client.files.list(purpose="batch", limit=2)]
            first = await client.files.list(purpose="batch", limit=2)
            every = [f.id async for f in client.files.list()]
            oldest = await client.files.list(order="asc", limit=1)
            return made, other.id, batch_files, first, every, oldest

    made, other, batch_files, first, every, oldest = asyncio.run(main())
    assert batch_files == made[::-1]
    assert [f.id for f in first.data] == made[::-1][:2]
    assert first.has_more
    assert every == [other, *made[::-1]]
    assert [f.id for f in oldest.data] == [made[0]]
