"""A job whose items all failed reads ``failed`` wherever a front end or an operator looks.

The job's answer, its event stream's last event, retry-failed, ``conveyor jobs show`` and the
OpenAI batch status (where a batch of failed requests still completes, with an error file).
In-process (ASGI) but for the batch's upstream, the mock API on 127.0.0.1; each wait polls,
bounded by 5 s, far above the milliseconds these jobs take.
"""

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from conveyor.cli import main as cli
from conveyor.jobs import App, Jobs, MemoryStore
from conveyor.jobs.model import ItemResult, JobOptions, NewJob
from conveyor.jobs.stores.sqlite import SqliteStore
from conveyor.service import create_app

from .conftest import FAST_WORKER, api, config
from .test_batches import jsonl, line, service, until, upload


def analysis_app() -> App:
    """Task "analyse": reports a first step, then raises unless the item says "ok"."""
    app = App()
    attempts: dict[str, int] = {}

    @app.task("analyse")
    async def analyse(item: dict[str, Any], ctx: Any) -> str:
        ctx.progress(10, "Discovering...")
        await asyncio.sleep(0)
        attempts[item["repo"]] = attempts.get(item["repo"], 0) + 1
        if item.get("ok") or attempts[item["repo"]] > item.get("fails", 1):
            return "fine"
        msg = f"no such repo {item['repo']!r}"
        raise ValueError(msg)

    return app


@contextlib.asynccontextmanager
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    asgi = create_app(
        config(tmp_path), app=analysis_app(), store=MemoryStore(), worker_options=FAST_WORKER
    )
    async with asgi.router.lifespan_context(asgi):
        transport = httpx.ASGITransport(app=asgi)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
            yield c


async def ended(c: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    async with asyncio.timeout(5):
        while True:
            job: dict[str, Any] = (await c.get(f"/v1/jobs/{job_id}")).json()
            if job["status"] in {"completed", "failed", "cancelled"}:
                return job
            await asyncio.sleep(0.02)


def test_a_single_item_job_whose_task_raised_reads_failed_with_its_error(tmp_path):
    """status failed, the error's type and message, progress 100, the step at the end."""

    async def main() -> tuple[dict[str, Any], str]:
        async with client(tmp_path) as c:
            posted = await c.post("/v1/jobs", json={"task": "analyse", "items": [{"repo": "x"}]})
            job = await ended(c, posted.json()["id"])
            events = (await c.get(f"/v1/jobs/{job['id']}/events")).text
            return job, events

    job, events = asyncio.run(main())
    assert job["status"] == "failed"
    assert job["error"] == "ValueError: no such repo 'x'"
    assert (job["progress"], job["counts"]["failed"]) == (100, 1)
    assert job["step"] == "Failed: ValueError: no such repo 'x'"
    # The stream's last event is "done", and carries the same failed state.
    last = events.strip().split("\n\n")[-1].splitlines()
    assert last[1] == "event: done"
    done = json.loads(last[2].removeprefix("data: "))
    assert (done["status"], done["error"]) == ("failed", job["error"])


def test_a_job_with_one_success_completes_and_counts_its_failures(tmp_path):
    """The documented rule: one item succeeded, so completed, with counts.failed and no error."""

    async def main() -> dict[str, Any]:
        async with client(tmp_path) as c:
            items = [{"repo": "a"}, {"repo": "b", "ok": True}]
            posted = await c.post("/v1/jobs", json={"task": "analyse", "items": items})
            return await ended(c, posted.json()["id"])

    job = asyncio.run(main())
    assert (job["status"], job["error"], job["counts"]["failed"]) == ("completed", None, 1)
    assert job["step"] == "Completed: 1 of 2 items succeeded, 1 failed"


def test_retry_failed_reopens_a_failed_job_and_it_can_complete(tmp_path):
    """POST /retry on a failed job: 202, queued with no error, then completed once items pass."""

    async def main() -> tuple[dict[str, Any], dict[str, Any]]:
        async with client(tmp_path) as c:
            posted = await c.post("/v1/jobs", json={"task": "analyse", "items": [{"repo": "y"}]})
            job = await ended(c, posted.json()["id"])
            assert job["status"] == "failed"
            retried = await c.post(f"/v1/jobs/{job['id']}/retry")
            assert retried.status_code == 202
            return retried.json(), await ended(c, job["id"])

    retried, job = asyncio.run(main())
    assert retried["retried"] == 1
    assert retried["job"]["error"] is None
    assert retried["job"]["status"] in {"queued", "running", "completed"}
    assert (job["status"], job["error"], job["counts"]["succeeded"]) == ("completed", None, 1)


def test_jobs_show_says_failed_and_why(tmp_path, capsys):
    """``conveyor jobs show`` of a job whose only item failed: status failed and the error."""
    path = tmp_path / "jobs.db"

    async def settle() -> None:
        store = SqliteStore(path)
        await store.create_job(NewJob(id="j1", task="t", options=JobOptions(), created_at=1), ["1"])
        await store.claim("w", limit=1, lease_s=10)
        await store.record("w", [ItemResult("j1", 0, "failed", 1, 0.1, None, "KeyError", "'id'")])
        await store.close()

    asyncio.run(settle())
    assert cli(["jobs", "show", "j1", "--json", "--store", f"sqlite:///{path}"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["status"], shown["error"]) == ("failed", "KeyError: 'id'")


def test_an_openai_batch_whose_every_request_failed_completes_with_an_error_file(tmp_path):
    """OpenAI's "failed" means the batch could not run: failed requests complete, in errors."""

    async def main() -> tuple[Any, str]:
        async with service(tmp_path) as openai_client:
            file_id = await upload(openai_client, jsonl([line("a", ""), line("b", "")]))
            batch = await openai_client.batches.create(
                input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
            )
            done = await until(openai_client, batch.id, "completed", "failed")
            errors = ""
            if done.error_file_id is not None:
                errors = (await openai_client.files.content(done.error_file_id)).text
            return done, errors

    done, errors = asyncio.run(main())
    assert done.status == "completed"
    assert done.output_file_id is None
    assert (done.request_counts.completed, done.request_counts.failed) == (0, 2)
    assert sorted(json.loads(x)["custom_id"] for x in errors.splitlines()) == ["a", "b"]


def test_a_job_no_worker_claimed_says_what_it_waits_for(tmp_path):
    """A queued job with no step says which worker it waits for, never nothing.

    Its task was submitted elsewhere (`conveyor jobs submit` without ``--app``) and no worker
    has it yet.
    """
    store = MemoryStore()

    async def main() -> tuple[Any, Any]:
        job = await Jobs(store).submit("extarct", [1])  # as `conveyor jobs submit` without --app
        async with api(config(tmp_path), worker=False, store=store) as s:
            shown = await s.client.get(f"/v1/jobs/{job.id}")
            listed = await s.client.get("/v1/jobs")
            return shown.json(), listed.json()["data"][0]

    shown, listed = asyncio.run(main())
    assert shown["status"] == "queued"
    assert shown["step"] == "waiting for a worker with task 'extarct'"
    assert listed["step"] == shown["step"]
