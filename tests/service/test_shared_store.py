"""Two service instances on one PostgreSQL store, no shared disk: every call crosses between them.

Each instance is the service in-process (ASGI) with its own files folder (a temporary folder
of its own, as two machines behind a load balancer have) and its own in-process worker; the
one thing they share is the store, a schema of this test's own in the local PostgreSQL. The
official ``openai`` and ``anthropic`` clients, one on each instance, drive OpenAI's Files and
Batch API and Anthropic's Message Batches; the connection of both is the project's mock API
on 127.0.0.1. Real sockets and real time: every wait polls every 20 ms, bounded by 20 s.
"""

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import openai

from conveyor.jobs import App
from conveyor.jobs.stores.postgres import PostgresStore
from conveyor.mockapi import MockAPI, MockConfig
from conveyor.service import ServiceConfig, create_app
from conveyor.service.config import Connection

from .anthropic_kit import request
from .conftest import FAST_WORKER
from .test_batches import CHAT, jsonl, line


@dataclass
class Instance:
    """One service instance and the clients on it."""

    openai: openai.AsyncOpenAI
    anthropic: anthropic.AsyncAnthropic
    http: httpx2.AsyncClient
    folder: Path


@contextlib.asynccontextmanager
async def instance(url: str, folder: Path, base_url: str) -> AsyncIterator[Instance]:
    """A service on the store `url`, with `folder` its own files folder."""
    cfg = ServiceConfig(
        store=url,
        keys_file=None,
        files_dir=folder,
        connections=(Connection(name="mock", base_url=base_url),),
        batch_sweep_s=0.2,
    )
    asgi = create_app(cfg, app=App(), store=PostgresStore(url), worker_options=FAST_WORKER)
    async with asgi.router.lifespan_context(asgi):
        http = httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=asgi), base_url="http://localhost", timeout=20
        )
        clients = Instance(
            openai.AsyncOpenAI(api_key="unused", base_url="http://localhost/v1", http_client=http),
            anthropic.AsyncAnthropic(
                api_key="unused", base_url="http://localhost", http_client=http
            ),
            http,
            folder,
        )
        try:
            yield clients
        finally:
            await http.aclose()


@contextlib.asynccontextmanager
async def two(
    pg: str, tmp_path: Path, latency_ms: float = 1.0
) -> AsyncIterator[tuple[Instance, Instance]]:
    """Instances A and B on the store `pg`, each with a files folder of its own."""
    async with (
        MockAPI(MockConfig(latency_ms=latency_ms)) as upstream,
        instance(pg, tmp_path / "a", upstream.base_url) as a,
        instance(pg, tmp_path / "b", upstream.base_url) as b,
    ):
        yield a, b


async def until(client: openai.AsyncOpenAI, batch_id: str, *statuses: str) -> Any:
    async with asyncio.timeout(20):
        while (batch := await client.batches.retrieve(batch_id)).status not in statuses:  # noqa: ASYNC110 - polls
            await asyncio.sleep(0.02)
    return batch


async def ended(client: anthropic.AsyncAnthropic, batch_id: str) -> Any:
    async with asyncio.timeout(20):
        while (b := await client.messages.batches.retrieve(batch_id)).processing_status != "ended":  # noqa: ASYNC110 - polls
            await asyncio.sleep(0.02)
    return b


async def job_done(http: httpx2.AsyncClient, job_id: str) -> Any:
    async with asyncio.timeout(20):
        while (job := (await http.get(f"/v1/jobs/{job_id}")).json())["status"] != "completed":  # noqa: ASYNC110 - polls
            await asyncio.sleep(0.02)
    return job


def nothing_on_disk(*folders: Path) -> None:
    """No instance wrote a file of its own: everything is in the store."""
    for folder in folders:
        assert not folder.exists() or not [p for p in folder.rglob("*") if p.is_file()], folder


def test_files_and_openai_batches_are_served_by_either_instance(pg, tmp_path):
    """Upload on A; list, read, download on B; a batch made on B, read on A, its output on B."""
    lines = [line(f"r{i}", f"question {i}") for i in range(12)]
    lines.append(line("bad", content=""))  # the upstream answers 400: an error line

    async def main() -> dict[str, Any]:
        async with two(pg, tmp_path) as (a, b):
            data = jsonl(lines)
            file_id = (await a.openai.files.create(file=("in.jsonl", data), purpose="batch")).id
            listed = [f.id async for f in b.openai.files.list(purpose="batch")]
            info = await b.openai.files.retrieve(file_id)
            content = (await b.openai.files.content(file_id)).content
            batch = await b.openai.batches.create(
                input_file_id=file_id, endpoint=CHAT, completion_window="24h"
            )
            seen_on_a = await a.openai.batches.retrieve(batch.id)
            done = await until(a.openai, batch.id, "completed", "failed")
            output = (await b.openai.files.content(done.output_file_id)).text
            errors = (await a.openai.files.content(done.error_file_id)).text
            both = [[x.id async for x in c.openai.batches.list()] for c in (a, b)]
            return {
                "file_id": file_id,
                "listed": listed,
                "info": info,
                "content": content,
                "data": data,
                "seen_on_a": seen_on_a,
                "done": done,
                "output": output,
                "errors": errors,
                "both": both,
            }

    r = asyncio.run(main())
    assert r["listed"] == [r["file_id"]]
    assert (r["info"].bytes, r["info"].filename) == (len(r["data"]), "in.jsonl")
    assert r["content"] == r["data"]
    assert r["seen_on_a"].status == "in_progress"
    assert r["done"].status == "completed"
    counts = r["done"].request_counts
    assert (counts.total, counts.completed, counts.failed) == (13, 12, 1)
    assert sorted(json.loads(x)["custom_id"] for x in r["output"].splitlines()) == sorted(
        f"r{i}" for i in range(12)
    )
    assert [json.loads(x)["custom_id"] for x in r["errors"].splitlines()] == ["bad"]
    assert r["both"][0] == r["both"][1] == [r["done"].id]
    nothing_on_disk(tmp_path / "a", tmp_path / "b")


def test_a_batch_made_on_one_instance_is_cancelled_on_the_other(pg, tmp_path):
    """Created on B, cancelled on A mid-way: cancelled on both, its files written once."""
    lines = [line(f"r{i}", f"q {i}") for i in range(300)]

    async def main() -> tuple[Any, Any, str]:
        async with two(pg, tmp_path, latency_ms=50.0) as (a, b):
            file_id = (
                await b.openai.files.create(file=("in.jsonl", jsonl(lines)), purpose="batch")
            ).id
            batch = await b.openai.batches.create(
                input_file_id=file_id, endpoint=CHAT, completion_window="24h"
            )
            cancelling = await a.openai.batches.cancel(batch.id)
            # Both instances read it while it finalizes: its files are written once.
            done_a, done_b = await asyncio.gather(
                until(a.openai, batch.id, "cancelled"), until(b.openai, batch.id, "cancelled")
            )
            assert (done_a.output_file_id, done_a.error_file_id) == (
                done_b.output_file_id,
                done_b.error_file_id,
            )
            batch_files = [f async for f in a.openai.files.list(purpose="batch_output")]
            assert len(batch_files) == len(
                [x for x in (done_a.output_file_id, done_a.error_file_id) if x]
            )
            errors = (await b.openai.files.content(done_a.error_file_id)).text
            return cancelling, done_a, errors

    cancelling, done, errors = asyncio.run(main())
    assert cancelling.status in {"cancelling", "cancelled"}
    counts = done.request_counts
    assert counts.completed < 300
    codes = {json.loads(x)["error"]["code"] for x in errors.splitlines()}
    assert codes == {"batch_cancelled"}
    assert len(errors.splitlines()) == 300 - counts.completed


def test_a_job_made_on_one_instance_from_a_file_uploaded_to_the_other(pg, tmp_path):
    """A job input uploaded to B is made a job on A, run, and its results read on B."""
    lines = [line(f"r{i}", f"q {i}") for i in range(30)]

    async def main() -> tuple[Any, Any, Any]:
        async with two(pg, tmp_path) as (a, b):
            uploaded = await b.http.post("/v1/files", content=jsonl(lines))
            assert uploaded.status_code == 201, uploaded.text
            body = {"task": "http:mock", "file_id": uploaded.json()["id"]}
            made = await a.http.post("/v1/jobs", json=body)
            assert made.status_code == 202, made.text
            job_id = made.json()["id"]
            job = await job_done(b.http, job_id)
            results = await b.http.get(f"/v1/jobs/{job_id}/results")
            return uploaded.json(), job, results

    uploaded, job, results = asyncio.run(main())
    assert uploaded["items"] == 30
    assert job["counts"]["succeeded"] == 30
    assert results.status_code == 200, results.text
    ids = [json.loads(r)["input"]["custom_id"] for r in results.text.splitlines()]
    assert ids == [f"r{i}" for i in range(30)]


def test_message_batches_are_served_by_either_instance(pg, tmp_path):
    """Made on A, read and listed on B, its results on B, cancelled and deleted across."""

    async def main() -> dict[str, Any]:
        async with two(pg, tmp_path) as (a, b):
            made = await a.anthropic.messages.batches.create(
                requests=[request(f"r{i}", f"q {i}") for i in range(10)]
            )
            read_on_b = await b.anthropic.messages.batches.retrieve(made.id)
            done = await ended(b.anthropic, made.id)
            results = [r async for r in await b.anthropic.messages.batches.results(made.id)]
            listed = [x.id async for x in a.anthropic.messages.batches.list()]
            deleted = await a.anthropic.messages.batches.delete(made.id)
            gone = await b.http.get(f"/v1/messages/batches/{made.id}")
            return {
                "made": made,
                "read_on_b": read_on_b,
                "done": done,
                "results": results,
                "listed": listed,
                "deleted": deleted,
                "gone": gone.status_code,
            }

    r = asyncio.run(main())
    assert r["read_on_b"].id == r["made"].id
    assert r["done"].request_counts.succeeded == 10
    assert sorted(x.custom_id for x in r["results"]) == sorted(f"r{i}" for i in range(10))
    assert r["listed"] == [r["made"].id]
    assert r["deleted"].id == r["made"].id
    assert r["gone"] == 404
    nothing_on_disk(tmp_path / "a", tmp_path / "b")


def test_a_message_batch_cancelled_on_the_other_instance_ends_canceled(pg, tmp_path):
    """Made on B, cancelled on A mid-way: ended on both, what did not run canceled."""

    async def main() -> Any:
        async with two(pg, tmp_path, latency_ms=50.0) as (a, b):
            made = await b.anthropic.messages.batches.create(
                requests=[request(f"r{i}", f"q {i}") for i in range(300)]
            )
            await a.anthropic.messages.batches.cancel(made.id)
            done_a, done_b = await asyncio.gather(
                ended(a.anthropic, made.id), ended(b.anthropic, made.id)
            )
            assert done_a.request_counts == done_b.request_counts
            return done_b

    done = asyncio.run(main())
    counts = done.request_counts
    assert counts.canceled > 0
    assert counts.succeeded + counts.canceled == 300
    assert done.cancel_initiated_at is not None
