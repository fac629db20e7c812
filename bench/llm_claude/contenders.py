"""The Claude route's contenders in this interpreter: the SDK baseline and Conveyor's three ways.

Each is a coroutine function of the mock's base URL, the work and a scratch folder that returns
how many requests were answered. Conveyor's three are stubs until their parts land: they raise
`NotAvailableYet` (a `NotImplementedError`) naming what they will call, before sending anything,
and the route prints them as "not available yet". The helpers they will use (`settle_all`,
`write_lines`, `drive_message_batches`, `claude_limiter`) are here and used or tested now, so at
merge only the stubs' bodies change.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Any

import anthropic

import conveyor

from .work import BURST_S, CONCURRENCY, ITPM, OTPM, RPM

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

    from .work import Request

__all__ = [
    "NotAvailableYet",
    "claude_limiter",
    "drive_message_batches",
    "run_conveyor_run",
    "run_limit_anthropic",
    "run_message_batches",
    "run_sdk_semaphore",
    "settle_all",
    "write_lines",
]

ATTEMPTS = 10
BATCH_DEADLINE_S = 300.0


class NotAvailableYet(NotImplementedError):
    """A Conveyor way whose parts are not in this tree yet; raised before anything is sent.

    Its own class, so that a `NotImplementedError` from a real run is not taken for a stub.
    """


async def settle_all(
    call: Callable[[Request], Awaitable[object]], work: list[Request], *, concurrency: int
) -> int:
    """Call `call` on every request, `concurrency` at a time; return how many succeeded."""
    gate = asyncio.Semaphore(concurrency)

    async def one(request: Request) -> bool:
        async with gate:
            try:
                await call(request)
            except Exception:
                return False
            return True

    return sum(await asyncio.gather(*(one(r) for r in work)))


async def run_sdk_semaphore(base: str, work: list[Request], tmp: Path) -> int:  # noqa: ARG001
    """The way users do it today: ``AsyncAnthropic`` with its own retries, a semaphore of 50.

    The SDK retries 429s (after ``retry-after``), 529s and connection errors, up to
    ``max_retries`` times with its backoff; it knows no limit before a refusal.
    """
    async with anthropic.AsyncAnthropic(
        base_url=base, api_key="unused", max_retries=ATTEMPTS
    ) as client:

        async def call(request: Request) -> object:
            return await client.messages.create(**request.body())

        return await settle_all(call, work, concurrency=CONCURRENCY)


def claude_limiter() -> conveyor.Limiter:
    """Return the limiter of Anthropic's shape the Conveyor contenders share: the mock's limits."""
    return conveyor.Limiter(
        "claude",
        requests_per_minute=RPM,
        input_tokens_per_minute=ITPM,
        output_tokens_per_minute=OTPM,
        bucket_s=BURST_S,
    )


def write_lines(work: list[Request], path: Path) -> Path:
    """Write the work as ``conveyor run`` lines (``custom_id``, ``method``, ``url``, ``body``)."""
    path.write_text("".join(json.dumps(r.line()) + "\n" for r in work))
    return path


async def run_conveyor_run(base: str, work: list[Request], tmp: Path) -> int:
    """``conveyor run``'s runner on the work's lines (url ``/v1/messages``), Anthropic's limits.

    At merge: ``plan = prepare(BatchFiles(input=write_lines(work, tmp / "claude.jsonl"),
    output=tmp / "claude-out.jsonl"), Endpoint(base_url=base))``, then
    ``Batch(plan, limits=BatchLimits(concurrency=CONCURRENCY, requests_per_minute=RPM,
    input_tokens_per_minute=ITPM, output_tokens_per_minute=OTPM, bucket_s=BURST_S),
    retry=conveyor.Retry(attempts=ATTEMPTS, ...)).run()``; return ``summary.succeeded``
    (bench/llm.py's `run_runner` does the same on the OpenAI route).
    """
    del base, work, tmp
    msg = (
        "conveyor run on /v1/messages lines: conveyor.http.Batch with BatchLimits("
        "input_tokens_per_minute=..., output_tokens_per_minute=..., bucket_s=...)"
    )
    raise NotAvailableYet(msg)


async def run_limit_anthropic(base: str, work: list[Request], tmp: Path) -> int:
    """The wrapped client: ``conveyor.llm.limit_anthropic`` over ``AsyncAnthropic``, one limiter.

    At merge: ``async with anthropic.AsyncAnthropic(base_url=base, api_key="unused",
    max_retries=0) as raw: client = limit_anthropic(raw, limiters=[claude_limiter()],
    retry=conveyor.Retry(attempts=ATTEMPTS, ...))``, then ``settle_all(lambda r:
    client.messages.create(**r.body()), work, concurrency=CONCURRENCY)``.
    """
    del base, work, tmp
    msg = (
        "conveyor.llm.limit_anthropic(anthropic.AsyncAnthropic(base_url=mock, max_retries=0),"
        " limiters=[Limiter(requests_per_minute=..., input_tokens_per_minute=...,"
        " output_tokens_per_minute=..., bucket_s=1)])"
    )
    raise NotAvailableYet(msg)


async def run_message_batches(base: str, work: list[Request], tmp: Path) -> int:
    """Conveyor's Message Batches API, in-process, driven by the ``anthropic`` SDK.

    At merge: ``create_app(ServiceConfig(store=f"sqlite:///{tmp / 'claude-jobs.db'}",
    keys_file=None, files_dir=tmp / "claude-files", connections=(Connection(name="claude",
    base_url=base, <the mock's limits: RPM, ITPM, OTPM, BURST_S>),)), app=App(),
    worker_options=WorkerOptions(poll_interval_s=0.05, flush_interval_s=0.1))``, its lifespan
    entered, then ``drive_message_batches(anthropic.AsyncAnthropic(api_key="unused",
    base_url="http://localhost", http_client=httpx2.AsyncClient(
    transport=httpx2.ASGITransport(app=asgi))), work)`` (bench/llm.py's `run_batch_api` does
    the same with the ``openai`` SDK).
    """
    del base, work, tmp
    msg = (
        "Conveyor's Message Batches API: create_app(ServiceConfig(connections=(Connection("
        "base_url=mock, input and output tokens per minute),))) in-process, driven by"
        " anthropic.AsyncAnthropic(...).messages.batches"
    )
    raise NotAvailableYet(msg)


async def drive_message_batches(
    client: anthropic.AsyncAnthropic,
    work: list[Request],
    *,
    poll_s: float = 0.2,
    deadline_s: float = BATCH_DEADLINE_S,
) -> int:
    """Create one message batch of the work, poll it until it ends, count its succeeded results.

    The SDK's calls a user makes: ``messages.batches.create``, ``retrieve`` until
    ``processing_status`` is ``"ended"``, then ``results`` (one JSON line a request).
    """
    requests: list[Any] = [r.batch_request() for r in work]
    batch = await client.messages.batches.create(requests=requests)
    ends_at = time.monotonic() + deadline_s
    while batch.processing_status != "ended":
        if time.monotonic() > ends_at:
            msg = f"the message batch did not end within {deadline_s:g} s: {batch.request_counts}"
            raise TimeoutError(msg)
        await asyncio.sleep(poll_s)
        batch = await client.messages.batches.retrieve(batch.id)
    succeeded = 0
    async for entry in await client.messages.batches.results(batch.id):
        succeeded += entry.result.type == "succeeded"
    return succeeded
