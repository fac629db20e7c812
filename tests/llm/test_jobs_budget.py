"""A job's spend budget (``max_cost_usd``), kept by the worker for the connections' http tasks.

The upstream is a fake transport answering at once with a fixed ``usage``; the worker runs
until it is idle, so nothing waits on timing.
"""

import asyncio
from pathlib import Path
from typing import Any

import pytest

from conveyor.engine.events import ItemFinished
from conveyor.engine.report import Outcome
from conveyor.errors import ConfigError
from conveyor.jobs import App, JobOptions, Jobs, Worker, WorkerOptions
from conveyor.jobs.jobrun import JobRun
from conveyor.jobs.store import Store
from conveyor.jobs.stores.memory import MemoryStore
from conveyor.jobs.stores.sqlite import SqliteStore
from conveyor.llm.pricing import PriceTable, Usage

from ..http.fakes import FakeAPI, ok, status

MODEL = "gpt-4o-mini"
FAST = WorkerOptions(poll_interval_s=0.01, flush_interval_s=0.01)


def _line(i: int, model: str = MODEL) -> dict[str, Any]:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 100}
    return {"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions", "body": body}


def _answer(n: int, body: Any, headers: Any) -> Any:
    usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    return ok({"model": MODEL, "choices": [], "usage": usage})


PRICES = PriceTable.default()
#: The most an item may cost (its prompt and all of max_tokens), and what its answer costs.
BOUND = PRICES.request_bound_usd(
    b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"max_tokens":100}'
)[1]
SPENT = PRICES.answer_cost_usd(Usage(MODEL, 10, 5))


def _app(api: FakeAPI) -> App:
    app = App()
    app.add_http_task(name="http:mock", base_url="http://api.test", transport=api)
    return app


def _open(kind: str, tmp_path: Path) -> Store:
    return MemoryStore() if kind == "memory" else SqliteStore(tmp_path / "jobs.db")


async def _drain(store: Store, app: App) -> Worker:
    worker = Worker(store, app, options=FAST)
    async with asyncio.timeout(10):
        await worker.run(until_idle=True)
    return worker


def test_prices_give_a_bound_above_the_answers_cost():
    """The test's premise: an item's bound is known and above what its answer costs."""
    assert BOUND is not None
    assert SPENT is not None
    assert 0 < SPENT < BOUND


@pytest.mark.parametrize("concurrency", [1, 4])
@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_no_item_starts_once_the_next_could_pass_the_budget(kind, concurrency, tmp_path):
    """Items start while spend + bound fits; the rest stay pending, not failed.

    At concurrency 4 as at 1: an item that does not fit beside those in flight waits for them
    to settle (their answers cost less than their bounds), so the same three run.
    """
    assert BOUND is not None
    assert SPENT is not None
    budget = 2 * SPENT + BOUND + SPENT / 2  # items 0, 1, 2 fit; item 3 would not

    async def main() -> tuple[Any, int, str | None]:
        api = FakeAPI(_answer, latency_s=0.0)
        store = _open(kind, tmp_path)
        jobs = Jobs(store, app=_app(api))
        options = JobOptions(concurrency=concurrency, max_cost_usd=budget)
        job = await jobs.submit("http:mock", [_line(i) for i in range(8)], options=options)
        worker = await _drain(store, _app(api))
        assert job.id in worker.over_budget
        after = await jobs.get(job.id)
        await jobs.close()
        return after, api.calls, after.step

    job, calls, step = asyncio.run(main())
    assert calls == 3
    assert (job.counts.succeeded, job.counts.pending, job.counts.failed) == (3, 5, 0)
    assert job.status in {"queued", "running"}
    assert job.error is None
    assert step is not None
    assert step.startswith("budget reached")


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_several_workers_on_one_budgeted_job_keep_the_budget_exactly(kind, tmp_path):
    """Three workers at once: the job runs on one at a time, so the budget holds exactly."""
    assert BOUND is not None
    assert SPENT is not None
    budget = 2 * SPENT + BOUND + SPENT / 2  # three calls fit, as with one worker

    async def main() -> tuple[Any, int, list[int]]:
        api = FakeAPI(_answer, latency_s=0.001)
        shared = MemoryStore()
        stores = [shared if kind == "memory" else _open(kind, tmp_path) for _ in range(3)]
        jobs = Jobs(stores[0], app=_app(api))
        options = JobOptions(concurrency=2, max_cost_usd=budget)
        job = await jobs.submit("http:mock", [_line(i) for i in range(12)], options=options)
        workers = await asyncio.gather(*(_drain(s, _app(api)) for s in stores))
        after = await jobs.get(job.id)
        await jobs.close()
        for s in stores[1:]:
            await s.close()
        return after, api.calls, [w.settled for w in workers]

    job, calls, settled = asyncio.run(main())
    assert calls == 3
    assert (job.counts.succeeded, job.counts.pending, job.counts.failed) == (3, 9, 0)
    assert sum(settled) == 3  # the job may pass from one to the next, never run on two


@pytest.mark.parametrize("concurrency", [1, 2])
def test_an_item_waiting_for_its_retry_never_stalls_the_budget(concurrency, tmp_path):
    """A 503, then a retry, with room for one bound and a half: every item runs, at any level.

    At concurrency 1 the only engine worker is the one asking for the next item, which waits
    for the budget the retry holds: the worker stops waiting for that pull when the retry
    falls due, runs it, and the room it frees lets the next item in.
    """
    assert BOUND is not None

    def script(n: int, body: Any, headers: Any) -> Any:
        return status(503, "busy") if n == 1 else _answer(n, body, headers)

    async def main() -> tuple[Any, int]:
        api = FakeAPI(script, latency_s=0.0)
        store = MemoryStore()
        jobs = Jobs(store, app=_app(api))
        options = JobOptions(concurrency=concurrency, attempts=3, max_cost_usd=1.5 * BOUND)
        job = await jobs.submit("http:mock", [_line(i) for i in range(3)], options=options)
        await _drain(store, _app(api))
        after = await jobs.get(job.id)
        await jobs.close()
        return after, api.calls

    job, calls = asyncio.run(main())
    assert (job.counts.succeeded, job.counts.pending, job.counts.failed) == (3, 0, 0)
    assert job.status == "completed"
    assert calls == 4  # the 503 and one call per answer


def test_items_in_flight_hold_their_share_of_the_budget(tmp_path):
    """Room for three bounds: the fourth item waits for one in flight to settle, not halts.

    Settled below its bound, item 0 leaves room for item 3 (halting with nothing in flight
    is the test above, at concurrency 1).
    """
    assert BOUND is not None
    assert SPENT is not None

    async def main() -> None:
        api = FakeAPI(_answer, latency_s=0.0)
        app = _app(api)
        store = MemoryStore()
        jobs = Jobs(store, app=app)
        options = JobOptions(concurrency=10, max_cost_usd=3.5 * BOUND)
        await jobs.submit("http:mock", [_line(i) for i in range(10)], options=options)
        worker = Worker(store, app, options=WorkerOptions(claim_size=10))
        claim = await store.claim(worker.id, limit=10, lease_s=30.0)
        assert claim is not None
        task = app.get_task("http:mock")
        assert task is not None
        run = JobRun(worker, claim, task, ())
        items = run._items()
        admitted = [(await anext(items)).index for _ in range(3)]  # type: ignore[union-attr]
        assert admitted == [0, 1, 2]
        fourth = asyncio.ensure_future(anext(items))
        for _ in range(5):  # let it run as far as it can: it waits, held by the three
            await asyncio.sleep(0)
        assert not fourth.done()
        assert run.halted is None

        def settle(item: Any) -> None:
            run._budget.spent += SPENT  # type: ignore[union-attr] # as the task does with usage
            outcome = Outcome(item.index, item, "succeeded", "{}", None, 1, 0.0, 0.0)
            run._on_event(ItemFinished(outcome))

        settle(claim.items[0])
        assert (await asyncio.wait_for(fourth, 5)).index == 3  # type: ignore[union-attr]
        assert run.halted is None
        assert run._budget.held_usd == pytest.approx(3 * BOUND)  # type: ignore[union-attr]
        await jobs.close()

    asyncio.run(main())


def test_the_spend_survives_a_worker_restart(tmp_path):
    """A new worker sums the stored answers: it starts nothing more, and says why."""
    assert BOUND is not None
    assert SPENT is not None
    budget = 2 * SPENT + BOUND + SPENT / 2

    async def first() -> str:
        api = FakeAPI(_answer, latency_s=0.0)
        store = SqliteStore(tmp_path / "jobs.db")
        jobs = Jobs(store, app=_app(api))
        options = JobOptions(concurrency=1, max_cost_usd=budget)
        job = await jobs.submit("http:mock", [_line(i) for i in range(6)], options=options)
        await _drain(store, _app(api))
        await jobs.close()
        return job.id

    async def again(job_id: str) -> tuple[Any, int, bool]:
        api = FakeAPI(_answer, latency_s=0.0)
        store = SqliteStore(tmp_path / "jobs.db")
        await store.set_progress(job_id, inflight=0.0, step=None)  # forget the first step
        worker = await _drain(store, _app(api))
        job = await store.get_job(job_id)
        await store.close()
        return job, api.calls, job_id in worker.over_budget

    job_id = asyncio.run(first())
    job, calls, remembered = asyncio.run(again(job_id))
    assert calls == 0
    assert remembered
    assert (job.counts.succeeded, job.counts.pending) == (3, 3)
    assert job.step is not None
    assert job.step.startswith("budget reached")


def test_a_job_over_budget_does_not_block_the_next_job(tmp_path):
    """The worker claims a later job while an older one waits at its budget."""
    assert BOUND is not None
    assert SPENT is not None

    async def main() -> tuple[Any, Any, int]:
        api = FakeAPI(_answer, latency_s=0.0)
        store = MemoryStore()
        jobs = Jobs(store, app=_app(api))
        capped = JobOptions(concurrency=1, max_cost_usd=BOUND + SPENT / 2)  # one item
        first = await jobs.submit("http:mock", [_line(i) for i in range(4)], options=capped)
        second = await jobs.submit("http:mock", [_line(i) for i in range(4)])
        await _drain(store, _app(api))
        a, b = await jobs.get(first.id), await jobs.get(second.id)
        await jobs.close()
        return a, b, api.calls

    first, second, calls = asyncio.run(main())
    assert (first.status in {"queued", "running"}, first.counts.pending) == (True, 3)
    assert (second.status, second.counts.succeeded) == ("completed", 4)
    assert calls == 5


def test_a_model_with_no_price_starts_nothing_under_a_budget(tmp_path):
    """The budget cannot be kept without a price: nothing is sent, the step names the model."""

    async def main() -> tuple[Any, int]:
        api = FakeAPI(_answer, latency_s=0.0)
        store = MemoryStore()
        jobs = Jobs(store, app=_app(api))
        options = JobOptions(max_cost_usd=10.0)
        job = await jobs.submit("http:mock", [_line(0, "no-such-model")], options=options)
        await _drain(store, _app(api))
        after = await jobs.get(job.id)
        await jobs.close()
        return after, api.calls

    job, calls = asyncio.run(main())
    assert calls == 0
    assert job.counts.pending == 1
    assert job.status != "failed"
    assert job.step is not None
    assert "no price for the model 'no-such-model'" in job.step


def test_a_budget_on_a_task_that_is_not_http_fails_the_job(tmp_path):
    """A plain task has no prices: the job fails at once, saying the budget is for http tasks."""

    async def main() -> Any:
        app = App()
        app.add_task("echo", lambda item: item)
        store = MemoryStore()
        jobs = Jobs(store, app=app)
        job = await jobs.submit("echo", [1, 2], options=JobOptions(max_cost_usd=1.0))
        await _drain(store, app)
        after = await jobs.get(job.id)
        await jobs.close()
        return after

    job = asyncio.run(main())
    assert job.status == "failed"
    assert job.error is not None
    assert "max_cost_usd=1" in job.error


@pytest.mark.parametrize("value", [0, -1.0, float("nan"), True, "5"])
def test_a_budget_must_be_a_positive_number(value):
    """JobOptions refuses a budget that is not a number of dollars > 0."""
    with pytest.raises(ConfigError, match="max_cost_usd"):
        JobOptions(max_cost_usd=value)


def test_the_budget_is_stored_with_the_options():
    """to_json / from_json keep max_cost_usd."""
    options = JobOptions(max_cost_usd=2.5)
    assert JobOptions.from_json(options.to_json()).max_cost_usd == 2.5


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_raising_the_budget_of_a_job_that_reached_it_runs_its_pending_items(kind, tmp_path):
    """Jobs.set_budget: the worker drops the job from over_budget and finishes it, same job.

    The worker polls every 10 ms against a fake upstream that answers at once; each wait is
    bounded by 10 s, far above the milliseconds it takes.
    """
    assert BOUND is not None
    assert SPENT is not None
    budget = 2 * SPENT + BOUND + SPENT / 2  # items 0, 1, 2 fit

    async def main() -> tuple[Any, Any, int, bool]:
        api = FakeAPI(_answer, latency_s=0.0)
        store = _open(kind, tmp_path)
        jobs = Jobs(store, app=_app(api))
        options = JobOptions(concurrency=1, max_cost_usd=budget)
        job = await jobs.submit("http:mock", [_line(i) for i in range(8)], options=options)
        worker = Worker(store, _app(api), options=FAST)
        runner = asyncio.create_task(worker.run())
        async with asyncio.timeout(10):
            while job.id not in worker.over_budget:  # noqa: ASYNC110 - polls the worker
                await asyncio.sleep(0.01)
        halted = await jobs.get(job.id)
        raised = await jobs.set_budget(job.id, 100.0)
        worker.wake()
        async with asyncio.timeout(10):
            done = await jobs.wait(job.id, interval_s=0.01)
        worker.stop()
        await runner
        await jobs.close()
        return halted, (raised, done), api.calls, job.id in worker.over_budget

    halted, (raised, done), calls, still_over = asyncio.run(main())
    assert (halted.counts.succeeded, halted.counts.pending) == (3, 5)
    assert raised.options.max_cost_usd == 100.0
    assert done.status == "completed"
    assert (done.counts.succeeded, done.counts.pending, done.counts.failed) == (8, 0, 0)
    assert calls == 8
    assert not still_over
