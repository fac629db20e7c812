"""The jobs' http task under token limits: charged per dimension, settled from each answer's usage.

The same requests as ``conveyor run``'s Claude tests (tests/http/test_claude_run.py), run as a
job's items through a limiter of Anthropic's shape, on virtual time, against a scripted API.
"""

import itertools
import json
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from conveyor import Limiter
from conveyor.http import RawAnswer
from conveyor.http.request import Request, parse_line
from conveyor.http.setup import request_costs
from conveyor.jobs import App, Jobs, MemoryStore, Worker
from conveyor.jobs.http_task import HttpJobTask
from conveyor.jobs.model import JobOptions
from conveyor.testing import VirtualClock

from ..http.fakes import FakeAPI

BASE = "https://api.anthropic.com"
MODEL = "claude-haiku-4-5"


def line(i: int, *, max_tokens: int = 64, **extra: Any) -> dict[str, Any]:
    """A Messages line of 30 input tokens (40 system and 80 message characters)."""
    body = {
        "model": MODEL,
        "max_tokens": max_tokens,
        "system": "s" * 40,
        "messages": [{"role": "user", "content": f"{i:04d}" + "u" * 76}],
    }
    return {"custom_id": f"c{i}", "method": "POST", "url": "/v1/messages", "body": body, **extra}


def message(*, input_tokens: int = 30, output_tokens: int = 10) -> RawAnswer:
    """A 200 Messages answer whose usage says `input_tokens` and `output_tokens`."""
    body = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [{"type": "text", "text": "ok"}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
    }
    return RawAnswer(200, {"content-type": "application/json"}, json.dumps(body).encode())


def starts_of(clock: VirtualClock, reply: Callable[[int], RawAnswer]) -> tuple[list[float], Any]:
    """The calls' start times (each answer takes 10 ms), and a script answering `reply`."""
    starts: list[float] = []

    def script(n: int, body: Any, headers: Mapping[str, str]) -> RawAnswer:
        starts.append(clock.now - 0.01)
        return reply(n)

    return starts, script


async def run_job(limiter: Limiter, api: FakeAPI, items: list[dict[str, Any]]) -> list[Any]:
    """Run `items` as one job of the http task through `limiter`; return the settled items."""
    app = App(limiters=[limiter])
    app.add_http_task(base_url=BASE, limiters=[limiter.name], transport=api)
    store = MemoryStore()
    jobs = Jobs(store, app=app)
    job = await jobs.submit("http", items, options=JobOptions(concurrency=len(items)))
    await Worker(store, app).run(until_idle=True)
    await app.aclose()
    return [i async for i in jobs.results(job.id)]


def test_an_item_costs_what_conveyor_run_charges_its_line():
    """Tokens, input and output apart, as request_costs gives; a line's own cost is kept."""
    task = HttpJobTask(base_url=BASE, headers={})
    for item in (line(0, max_tokens=100), line(1, cost=45), line(2, max_tokens=1024)):
        parsed = parse_line(json.dumps(item).encode(), 1, base_url=BASE)
        assert isinstance(parsed, Request)
        assert task.cost(item) == request_costs(parsed)
    assert task.cost(line(0, max_tokens=100)) == {
        "tokens": 130.0,
        "input_tokens": 30.0,
        "output_tokens": 100.0,
    }
    assert task.cost(line(1, cost=45))["tokens"] == 45.0


def test_an_item_that_cannot_be_sent_costs_nothing_in_any_dimension():
    """A refused line costs 0 everywhere: the task fails it, no limiter waits for it."""
    task = HttpJobTask(base_url=BASE, headers={})
    assert task.cost({"method": "BREW", "url": "/x"}) == {
        "tokens": 0.0,
        "input_tokens": 0.0,
        "output_tokens": 0.0,
    }


def test_the_input_token_bucket_paces_a_jobs_requests(run, clock):
    """1,800 input tokens a minute in a 1 s bucket: one 30-token request a second, no faster."""
    starts, script = starts_of(clock, lambda n: message())
    limiter = Limiter("claude", input_tokens_per_minute=1_800, bucket_s=1)
    items = run(run_job(limiter, FakeAPI(script), [line(i) for i in range(6)]))
    assert [i.state for i in items] == ["succeeded"] * 6
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert min(gaps) >= 0.99
    assert starts[-1] - starts[0] <= 5 * 1.05 + 0.05


def test_a_jobs_input_tokens_are_settled_from_each_answers_usage(run, clock):
    """A prompt that really took 60 input tokens, not the 30 estimated, is charged 60.

    At 30 input tokens a second, each request then holds the bucket for two seconds.
    """
    starts, script = starts_of(clock, lambda n: message(input_tokens=60))
    limiter = Limiter("claude", input_tokens_per_minute=1_800, bucket_s=1)
    run(run_job(limiter, FakeAPI(script), [line(i) for i in range(4)]))
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert min(gaps) >= 1.98


@pytest.mark.parametrize("output_tokens", [64, 8])
def test_a_jobs_output_tokens_are_settled_from_each_answers_usage(run, clock, output_tokens):
    """Under an output limit, short answers let requests in sooner; long ones hold them back."""
    starts, script = starts_of(clock, lambda n: message(output_tokens=output_tokens))
    limiter = Limiter("claude", output_tokens_per_minute=64 * 60, bucket_s=1)
    items = run(run_job(limiter, FakeAPI(script), [line(i) for i in range(12)]))
    assert [i.state for i in items] == ["succeeded"] * 12
    span = starts[-1] - starts[0]
    if output_tokens == 64:  # every answer takes a second of output: about a request a second
        assert span >= 9.0
    else:  # eight times shorter: all within a couple of seconds
        assert span < 3.0


def test_a_line_s_own_cost_is_kept_and_not_replaced_by_usage(run, clock):
    """A line's ``cost`` is what the limiter books, whatever the answer's usage says."""
    starts, script = starts_of(clock, lambda n: message(input_tokens=1))
    limiter = Limiter("claude", tokens_per_minute=3_600, bucket_s=2)  # 60 tokens a second
    run(run_job(limiter, FakeAPI(script), [line(i, cost=120) for i in range(3)]))
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert len(starts) == 3
    assert min(gaps) >= 1.98  # 120 tokens each: two seconds of the bucket


@pytest.mark.parametrize(
    ("input_tokens", "output_tokens", "least_s"),
    [(30, 64, 4.5), (130, 8, 5.0)],
    ids=["output-binds", "tokens-bind"],
)
def test_every_token_limiter_of_the_attempt_is_settled(
    run, clock, input_tokens, output_tokens, least_s
):
    """The connection's input/output limiter and a job's own tokens limiter: both settled.

    Six requests of 30 input tokens and a bound of 64 output tokens (94 tokens estimated);
    the input limit (1,000 a second) never binds. Answers of 64 output tokens hold the output
    bucket (64 a second) a second each; answers whose usage says 130 input and 8 output
    tokens cost the tokens limiter (100 a second) 138 each, not 94. Settled in one limiter
    only, either case runs a second or more sooner.
    """
    starts, script = starts_of(
        clock, lambda n: message(input_tokens=input_tokens, output_tokens=output_tokens)
    )
    split = Limiter(
        "claude", input_tokens_per_minute=60_000, output_tokens_per_minute=64 * 60, bucket_s=1
    )
    total = Limiter("tokens", tokens_per_minute=100 * 60, bucket_s=2)
    app = App(limiters=[split, total])
    app.add_http_task(base_url=BASE, limiters=["claude"], transport=FakeAPI(script))
    store = MemoryStore()

    async def main() -> list[Any]:
        jobs = Jobs(store, app=app)
        options = JobOptions(concurrency=6, limiters=("tokens",))
        job = await jobs.submit("http", [line(i) for i in range(6)], options=options)
        await Worker(store, app).run(until_idle=True)
        await app.aclose()
        return [i async for i in jobs.results(job.id)]

    items = run(main())
    assert [i.state for i in items] == ["succeeded"] * 6
    assert starts[-1] - starts[0] >= least_s, starts
