"""The official ``anthropic`` SDK against the mock API's Messages route, with no socket.

`InProcess` is the SDK's HTTP seam (an ``httpx2`` transport) calling the mock's own handler
(`conveyor.mockapi.app.MockHandler`): the mock's token buckets, 429s, 529s, spend cap and
headers, on whatever clock the loop has. On a `VirtualClock` a run of many seconds is exact
and instant. `Scripted` answers a fixed list instead: streams (which the mock does not send),
usage with prompt caching, other endpoints.
"""

import json
import time
from collections.abc import Callable, Iterator
from typing import Any, cast

import anthropic
import httpx2
from aiohttp import web
from multidict import CIMultiDict

from conveyor import Limiter, Retry
from conveyor.mockapi.app import MockHandler

FAST_RETRY = Retry(attempts=3, base_delay_s=0.001, max_delay_s=0.001)
MODEL = "claude-mock"


def user(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


def outputs(limiter: Limiter) -> list[float]:
    """The output tokens of the answers the limiter was settled with, oldest first."""
    estimate = limiter.costs.output
    assert estimate is not None
    return list(estimate._recent)


class _Request:
    """What the mock's handler reads of a request (no socket)."""

    def __init__(self, request: httpx2.Request, body: bytes) -> None:
        self.path = request.url.path
        self.method = request.method
        self.headers = CIMultiDict(request.headers.items())
        self.transport = None
        self._body = body

    async def read(self) -> bytes:
        return self._body


class InProcess(httpx2.AsyncBaseTransport):
    """Sends each request to the mock's handler in this loop; notes when each was sent."""

    def __init__(self, handler: MockHandler, clock: Callable[[], float]) -> None:
        self.handler = handler
        self.clock = clock
        self.sent: list[float] = []

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        body = await request.aread()
        self.sent.append(self.clock())
        answer = await self.handler(cast("web.BaseRequest", _Request(request, body)))
        assert isinstance(answer, web.Response)
        assert isinstance(answer.body, bytes)
        return httpx2.Response(
            answer.status, headers=list(answer.headers.items()), content=answer.body
        )


def in_process(transport: httpx2.AsyncBaseTransport, **options: Any) -> anthropic.AsyncAnthropic:
    http = httpx2.AsyncClient(transport=transport)
    return anthropic.AsyncAnthropic(
        api_key="sk-test", base_url="http://mock.test", http_client=http, **options
    )


def sse(events: list[dict[str, Any]]) -> bytes:
    """A Messages stream's body: one server-sent event per event, named by its type."""
    return b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)


def stream_events(text: str, *, input_tokens: int, output_tokens: int) -> list[dict[str, Any]]:
    """A whole Messages stream: start (the input), one text delta, the final usage, stop."""
    usage = {
        "input_tokens": input_tokens,
        "output_tokens": 1,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }
    message: dict[str, Any] = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": usage,
    }
    return [
        {"type": "message_start", "message": message},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}},
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": output_tokens},
        },
        {"type": "message_stop"},
    ]


Answer = tuple[int, dict[str, str], bytes]
OVERLOADED = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}


def as_json(body: dict[str, Any], status: int = 200) -> Answer:
    return status, {"content-type": "application/json"}, json.dumps(body).encode()


def as_stream(events: list[dict[str, Any]]) -> Answer:
    return 200, {"content-type": "text/event-stream"}, sse(events)


def message(usage: dict[str, int], stop_reason: str = "end_turn") -> dict[str, Any]:
    """A whole answer (a ``message``) with this usage."""
    return {
        "id": "msg_2",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [{"type": "text", "text": "Done."}],
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage,
    }


class Scripted(httpx2.AsyncBaseTransport, httpx2.BaseTransport):
    """Answers each request with the next answer of a script; notes when each was sent."""

    def __init__(self, answers: list[Answer], clock: Callable[[], float] = time.monotonic) -> None:
        self._answers: Iterator[Answer] = iter(answers)
        self._clock = clock
        self.sent: list[float] = []
        self.paths: list[str] = []

    def _next(self, request: httpx2.Request) -> httpx2.Response:
        self.sent.append(self._clock())
        self.paths.append(request.url.path)
        status, headers, body = next(self._answers)
        return httpx2.Response(status, headers=headers, content=body)

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        return self._next(request)

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        return self._next(request)


def sync_client(transport: httpx2.BaseTransport) -> anthropic.Anthropic:
    http = httpx2.Client(transport=transport)
    return anthropic.Anthropic(api_key="sk-test", base_url="http://mock.test", http_client=http)
