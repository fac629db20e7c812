"""The official ``anthropic`` client on the service, whose connections are the local mock API.

Shared by the Message Batches tests. The service runs in-process (ASGI, its worker in the same
event loop); the mock API listens on 127.0.0.1 (real sockets, so real time): every wait polls
the batch every 20 ms, bounded by 10 s, far above the tenths of a second these batches take.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import httpx2
from anthropic.types.messages import MessageBatchRequestCounts

from conveyor.jobs import App, MemoryStore
from conveyor.mockapi import MockAPI, MockConfig
from conveyor.service import ServiceConfig, create_app
from conveyor.service.config import Connection, Limits

from .conftest import FAST_WORKER

MODEL = "claude-mock"


def request(custom_id: str, content: str = "hello", **params: Any) -> Any:
    """One request of a batch, as the SDK takes it (Any: some tests send malformed ones)."""
    messages = [{"role": "user", "content": content}]
    body = {"model": MODEL, "max_tokens": 32, "messages": messages, **params}
    return {"custom_id": custom_id, "params": body}


@dataclass
class Setup:
    """The SDK on the service, a raw client on it, and the mock API behind it."""

    client: anthropic.AsyncAnthropic
    http: httpx2.AsyncClient
    upstream: MockAPI
    asgi: Any


@contextlib.asynccontextmanager
async def service(
    tmp_path: Path,
    *,
    latency_ms: float = 1.0,
    sweep_s: float = 5.0,
    limits: Limits | None = None,
    api_key: str | None = None,
    keys: bool = False,
    connections: tuple[str, ...] = ("mock",),
    mock: MockConfig | None = None,
    connection_limits: Mapping[str, Any] | None = None,
) -> AsyncIterator[Setup]:
    """The service, whose connection(s) are the mock API, and the official client on it.

    `mock` replaces the mock's configuration (`latency_ms` is then its own); each connection
    gets `connection_limits` (``input_tokens_per_minute=...``...).
    """
    limits_of: dict[str, Any] = dict(connection_limits or {})
    async with MockAPI(mock or MockConfig(latency_ms=latency_ms)) as upstream:
        cfg = ServiceConfig(
            store="memory:",
            keys_file=tmp_path / "keys.json" if keys else None,
            files_dir=tmp_path / "files",
            connections=tuple(
                Connection(name=n, base_url=upstream.base_url, **limits_of) for n in connections
            ),
            batch_sweep_s=sweep_s,
            limits=limits or Limits(),
        )
        asgi = create_app(cfg, app=App(), store=MemoryStore(), worker_options=FAST_WORKER)
        async with asgi.router.lifespan_context(asgi):
            http = httpx2.AsyncClient(
                transport=httpx2.ASGITransport(app=asgi), base_url="http://localhost"
            )
            client = anthropic.AsyncAnthropic(
                api_key=api_key or "unused", base_url="http://localhost", http_client=http
            )
            try:
                yield Setup(client, http, upstream, asgi)
            finally:
                await client.close()


async def until_ended(client: anthropic.AsyncAnthropic, batch_id: str) -> Any:
    """Poll the batch every 20 ms until it has ended (bounded: 10 s)."""
    async with asyncio.timeout(10):
        while True:
            batch = await client.messages.batches.retrieve(batch_id)
            if batch.processing_status == "ended":
                return batch
            await asyncio.sleep(0.02)


async def until_started(client: anthropic.AsyncAnthropic, batch_id: str) -> None:
    """Poll until a request has succeeded (the counts are live; bounded: 10 s)."""
    batches = client.messages.batches
    async with asyncio.timeout(10):
        while not (await batches.retrieve(batch_id)).request_counts.succeeded:  # noqa: ASYNC110 - polls
            await asyncio.sleep(0.02)


async def results(client: anthropic.AsyncAnthropic, batch_id: str) -> list[Any]:
    """Every line of the batch's results, through the SDK."""
    return [r async for r in await client.messages.batches.results(batch_id)]


def added(c: MessageBatchRequestCounts) -> int:
    """The requests the counts account for."""
    return c.processing + c.succeeded + c.errored + c.canceled + c.expired
