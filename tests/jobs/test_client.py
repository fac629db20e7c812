"""The Jobs client: submit's checks (nothing half-written), store URLs, watch, results, options."""

import asyncio
import itertools
import json

import pytest

import conveyor
from conveyor.http import RawAnswer
from conveyor.jobs import App, InvalidJob, JobNotFound, Jobs, MemoryStore, SqliteStore, Worker
from conveyor.jobs.client import open_store
from conveyor.jobs.http_task import HttpJobTask


def checked_app() -> App:
    app = App()

    def positive(n):
        if not isinstance(n, int) or n < 0:
            msg = f"{n!r} is not a count"
            raise ValueError(msg)

    @app.task("count", check=positive)
    async def count(n):
        return n

    return app


@pytest.mark.parametrize(
    ("task", "items", "match"),
    [
        ("nope", [1], "unknown task 'nope': the app has count"),
        ("count", [1, 2, -3, 4], "item 2 fails the input check of task 'count': -3 is not a count"),
        ("count", [], "no items"),
        ("count", "123", "items is a str"),
    ],
)
def test_a_refused_submit_writes_nothing(run, tmp_path, task, items, match):
    """Unknown task, an item failing the check, no items: InvalidJob, and no job in the store."""

    async def main() -> None:
        async with Jobs(SqliteStore(tmp_path / "j.db"), app=checked_app()) as jobs:
            with pytest.raises(InvalidJob, match=match):
                await jobs.submit(task, items)
            assert await jobs.list() == []

    run(main())


def test_oversized_and_non_json_items_are_refused_by_index(run):
    """An item over max_item_bytes, or not JSON, is refused naming its index."""

    async def main() -> None:
        jobs = Jobs(MemoryStore(), max_item_bytes=100)
        with pytest.raises(
            InvalidJob, match=r"item 1 is 1\d\d bytes of JSON, over max_item_bytes=100"
        ):
            await jobs.submit("t", ["ok", "x" * 120])
        with pytest.raises(InvalidJob, match="item 0 is not JSON"):
            await jobs.submit("t", [{1, 2}])
        assert await jobs.list() == []

    run(main())


def test_job_options_are_validated_with_the_fix():
    """Wrong options fail at construction, naming the argument and what to pass."""
    with pytest.raises(conveyor.ConfigError, match=r"concurrency=0: .* >= 1"):
        conveyor.JobOptions(concurrency=0)
    with pytest.raises(conveyor.ConfigError, match="timeout_s=-1"):
        conveyor.JobOptions(timeout_s=-1)
    with pytest.raises(conveyor.ConfigError, match="limiters='openai'"):
        conveyor.JobOptions(limiters="openai")  # type: ignore[arg-type]


def test_store_urls_open_the_right_store(tmp_path, monkeypatch):
    """sqlite:///relative, sqlite:////absolute, a path and memory: open stores; others explain."""
    monkeypatch.chdir(tmp_path)
    rel = open_store("sqlite:///rel.db")
    absolute = open_store(f"sqlite:///{tmp_path}/abs.db")
    plain = open_store(str(tmp_path / "plain.db"))
    assert isinstance(rel, SqliteStore)
    assert rel.path.resolve() == tmp_path / "rel.db"
    assert isinstance(absolute, SqliteStore)
    assert absolute.path == tmp_path / "abs.db"
    assert isinstance(plain, SqliteStore)
    assert isinstance(open_store("memory:"), MemoryStore)
    with pytest.raises(conveyor.ConfigError, match="'mysql' store is not available"):
        open_store("mysql://localhost/db")
    for store in (rel, absolute, plain):
        store._shutdown()


def test_get_of_an_unknown_job_raises_job_not_found(run):
    """get() of an id not in the store raises JobNotFound naming the id."""

    async def main() -> None:
        with pytest.raises(JobNotFound, match="'nope'"):
            await Jobs(MemoryStore()).get("nope")

    run(main())


def test_watch_yields_each_change_and_ends_when_done(run):
    """watch() yields distinct snapshots, in order, the last one done."""
    store = MemoryStore()
    app = App()

    @app.task("slow")
    async def slow(n):
        await asyncio.sleep(1)
        return n

    async def main() -> None:
        jobs = Jobs(store, app=app)
        job = await jobs.submit("slow", range(4), concurrency=1)
        worker = asyncio.create_task(Worker(store, app).run(until_idle=True))
        seen = [s async for s in jobs.watch(job.id, interval_s=0.25)]
        await worker
        assert seen[0].status in {"queued", "running"}
        assert seen[-1].status == "completed"
        settled = [s.counts.settled for s in seen]
        assert settled == sorted(settled)
        assert 4 in settled
        assert all(a != b for a, b in itertools.pairwise(seen))

    run(main())


def test_wait_times_out_on_a_job_nobody_runs(run):
    """wait(timeout_s=...) raises TimeoutError when no worker runs the job."""

    async def main() -> None:
        jobs = Jobs(MemoryStore())
        job = await jobs.submit("t", [1])
        with pytest.raises(TimeoutError):
            await jobs.wait(job.id, timeout_s=5)

    run(main())


def test_results_stream_across_pages_and_filter_by_state(run):
    """results() reads page after page in index order; state= keeps one state."""
    store = MemoryStore()
    app = App()

    @app.task("odd")
    async def odd(n):
        if n % 2:
            raise ValueError("odd")
        return n

    async def main() -> None:
        jobs = Jobs(store, app=app)
        job = await jobs.submit("odd", range(25))
        await Worker(store, app).run(until_idle=True)
        every = [i.index async for i in jobs.results(job.id, page_size=4)]
        failed = [i.index async for i in jobs.results(job.id, state="failed", page_size=4)]
        assert every == list(range(25))
        assert failed == list(range(1, 25, 2))
        with pytest.raises(conveyor.ConfigError, match="state='done'"):
            [i async for i in jobs.results(job.id, state="done")]  # type: ignore[arg-type]

    run(main())


def test_the_http_task_sends_request_lines_within_its_base_url(run):
    """The built-in http task checks lines at submit, sends them, and stores the answers."""
    sent: list[tuple[str, str, dict[str, str]]] = []

    async def transport(method, url, headers, body):
        sent.append((method, url, dict(headers)))
        if url.endswith("/fail"):
            return RawAnswer(400, {"content-type": "application/json"}, b'{"error":"bad"}')
        return RawAnswer(200, {"content-type": "application/json"}, body or b"{}")

    app = App()
    app.add_http_task(
        base_url="https://api.example.com",
        headers={"Authorization": "Bearer secret"},
        idempotency_header="Idempotency-Key",
        transport=transport,
    )
    store = MemoryStore()
    line = {"custom_id": "a", "method": "POST", "url": "/v1/echo", "body": {"x": 1}}

    async def main() -> None:
        jobs = Jobs(store, app=app)
        # Told as a job's submitter needs it: no flag of `conveyor run`, no base URL shown.
        with pytest.raises(InvalidJob, match="outside the task's base URL") as refused:
            await jobs.submit("http", [{**line, "url": "https://evil.example.org/steal"}])
        assert "api.example.com" not in str(refused.value)
        assert "--" not in str(refused.value)
        for bad in ({"hello": 1}, {"custom_id": "x", "body": {}}):
            with pytest.raises(InvalidJob) as refused:
                await jobs.submit("http", [bad])
            assert "--url" not in str(refused.value), refused.value
        job = await jobs.submit("http", [line, {**line, "custom_id": "b", "url": "/fail"}])
        await Worker(store, app).run(until_idle=True)
        items = [i async for i in jobs.results(job.id)]
        assert items[0].state == "succeeded"
        assert items[0].result["status_code"] == 200
        assert items[0].result["body"] == {"x": 1}
        assert (items[1].state, items[1].error_type) == ("failed", "HTTPStatusError")
        assert sent[0][:2] == ("POST", "https://api.example.com/v1/echo")
        assert sent[0][2]["Authorization"] == "Bearer secret"
        assert sent[0][2]["Idempotency-Key"] == f"{job.id}/0"
        stored = json.dumps([i.to_dict() for i in items])
        assert "secret" not in stored  # credentials stay with the worker's app

    run(main())


def test_the_http_task_check_rejects_lines_that_cannot_be_sent():
    """Lines without a url or with a bad method fail the input check with the reason."""
    task = HttpJobTask(base_url="https://api.example.com", headers={})
    with pytest.raises(ValueError, match="method"):
        task.check({"method": "BREW", "url": "/x", "body": {}})
    task.check({"url": "/v1/x", "body": {}})
