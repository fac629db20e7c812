"""The Claude route's contenders in this interpreter: the SDK baseline and Conveyor's three ways.

Each is a coroutine function of the mock's base URL, the work and a scratch folder that returns
how many requests were answered. Conveyor's three (``conveyor run``'s runner, the wrapped
``anthropic`` client, the Message Batches API) keep the mock's limits: requests, input and output
tokens a minute, in buckets of a second. A way not in a tree yet may raise `NotAvailableYet` (a
`NotImplementedError`) before sending anything; the route prints it as "not available yet".
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Any

import anthropic
import httpx2

import conveyor
from conveyor.http import Batch, BatchFiles, BatchLimits, Endpoint, prepare
from conveyor.jobs import App
from conveyor.jobs.worker import WorkerOptions
from conveyor.llm import limit_anthropic
from conveyor.service import ServiceConfig, create_app
from conveyor.service.config import Connection

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
#: How Conveyor's runner and wrapped client retry (bench/llm.py's OpenAI route's): 529s after
#: a short backoff, 429s after their retry-after.
RETRY = conveyor.Retry(attempts=ATTEMPTS, base_delay_s=0.05, max_delay_s=1.0, timeout_s=30.0)


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

    What ``conveyor run claude.jsonl --base-url MOCK --rpm ... --input-tpm ... --output-tpm
    ... --limit-bucket 1s --concurrency 50`` does (bench/llm.py's `run_runner` does the same
    on the OpenAI route); returns the requests that succeeded.
    """
    files = BatchFiles(
        input=write_lines(work, tmp / "claude.jsonl"), output=tmp / "claude-out.jsonl"
    )
    plan = prepare(files, Endpoint(base_url=base))
    limits = BatchLimits(
        concurrency=CONCURRENCY,
        requests_per_minute=RPM,
        input_tokens_per_minute=ITPM,
        output_tokens_per_minute=OTPM,
        bucket_s=BURST_S,
    )
    try:
        result = await Batch(plan, limits=limits, retry=RETRY).run()
    finally:
        plan.close()
    return result.summary.succeeded


async def run_limit_anthropic(base: str, work: list[Request], tmp: Path) -> int:  # noqa: ARG001
    """The wrapped client: ``conveyor.llm.limit_anthropic`` over ``AsyncAnthropic``, one limiter.

    The SDK's own retries are off (the wrapper retries through the limiter); 50 calls at a
    time, as the baseline.
    """
    async with anthropic.AsyncAnthropic(base_url=base, api_key="unused", max_retries=0) as raw:
        client = limit_anthropic(raw, limiters=[claude_limiter()], retry=RETRY)

        async def call(request: Request) -> object:
            return await client.messages.create(**request.body())

        return await settle_all(call, work, concurrency=CONCURRENCY)


async def run_message_batches(base: str, work: list[Request], tmp: Path) -> int:
    """Conveyor's Message Batches API, in-process, driven by the ``anthropic`` SDK.

    ``conveyor serve`` as an ASGI app (its worker in this process, the SQLite store), its one
    connection the mock with the mock's limits; the SDK creates the batch, polls it until it
    ends and reads its results (bench/llm.py's `run_batch_api` does the same with ``openai``).
    """
    connection = Connection(
        name="claude",
        base_url=base,
        requests_per_minute=RPM,
        input_tokens_per_minute=ITPM,
        output_tokens_per_minute=OTPM,
        bucket_s=BURST_S,
        concurrency=CONCURRENCY,
    )
    config = ServiceConfig(
        store=f"sqlite:///{tmp / 'claude-jobs.db'}",
        keys_file=None,
        files_dir=tmp / "claude-files",
        connections=(connection,),
    )
    worker = WorkerOptions(poll_interval_s=0.05, flush_interval_s=0.1)
    asgi = create_app(config, app=App(), worker_options=worker)
    async with asgi.router.lifespan_context(asgi):
        http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=asgi), timeout=60)
        async with anthropic.AsyncAnthropic(
            api_key="unused", base_url="http://localhost", http_client=http
        ) as client:
            return await drive_message_batches(client, work)


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
