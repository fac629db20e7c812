"""The request handler: routes, the order of checks, the answers (thin, over the pure parts).

The order a request meets (documented in docs/explanations/mock-api.md):

1. parse the body (400 with an OpenAI error object if it is not what the route expects);
2. rate-limit admission in the strict sliding window (429 with ``Retry-After``; a cost above the
   whole token share is a 400, since waiting would never help);
3. the fault draw: 500, hang or drop;
4. the latency;
5. the answer: 500 or a dropped connection if so drawn, else 200.

Every answer after admission carries the ``x-ratelimit-*`` headers.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web

from .._clock import now, wall
from .draws import Fault, draw_fault, draw_latency_s
from .headers import rate_limit_headers, retry_after_headers
from .protocol import (
    BadRequest,
    ChatRequest,
    chat_completion,
    cost_override,
    error_body,
    parse_chat,
    parse_json,
)
from .stats import Counters, MockStats, SuccessLog
from .window import Admission, ServerWindow

if TYPE_CHECKING:
    from .config import MockConfig
    from .shared import SharedCounters

__all__ = ["MockHandler"]

_CHAT = "/v1/chat/completions"
_ECHO = "/v1/echo"
_STATS = "/stats"
_STATS_RESET = "/stats/reset"
_METHODS = {_CHAT: "POST", _ECHO: "POST", _STATS: "GET", _STATS_RESET: "POST"}


_encode = msgspec.json.Encoder().encode


def _json(status: int, data: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        body=_encode(data),
        content_type="application/json",
        headers=headers,
    )


def _error(
    status: int,
    message: str,
    *,
    error_type: str,
    code: str,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    body = error_body(message, error_type=error_type, code=code, param=param)
    return _json(status, body, headers)


class MockHandler:
    """The mock API's state (window, random sources, counters) and its request handler.

    Call it with an aiohttp request (it is an ``aiohttp.web.Server`` handler). `release()` ends
    every hang at once; the server calls it on shutdown.
    """

    def __init__(self, config: MockConfig, *, shared: SharedCounters | None = None) -> None:
        self.config = config
        # When several processes serve one port: where they pool their counters.
        self._shared = shared
        self.window = ServerWindow(
            window_s=config.window_s,
            max_requests=config.request_share,
            max_tokens=config.token_share,
        )
        # One source per kind of draw, so that the faults of a seeded run stay the same when
        # the latency model changes.
        self._fault_rng = random.Random()
        self._latency_rng = random.Random()
        self._seed_draws()
        self.counters = Counters()
        self.successes = SuccessLog()
        self._released = asyncio.Event()
        self._ids = itertools.count(1)

    def stats(self) -> MockStats:
        """Return a snapshot of the counters (of every process serving the port)."""
        shared = self._shared
        if shared is None:
            return self.counters.snapshot()
        self._follow_resets(shared)
        shared.publish(self.counters)
        return shared.total()

    def reset(self) -> None:
        """Start a fresh phase (see `reset_here`), in every process serving the port."""
        self.reset_here()
        if self._shared is not None:
            self._shared.reset_all()
            self._shared.publish(self.counters)

    def _follow_resets(self, shared: SharedCounters) -> None:
        """Reset here if another process reset since this one last looked."""
        generation = shared.generation
        if generation != shared.seen_generation:
            shared.seen_generation = generation
            self.reset_here()

    def reset_here(self) -> None:
        """Start a fresh phase: zero the counters, forget the ids, empty the window, reseed.

        Side-by-side runs against one server then start equal: none inherits the previous
        run's admissions, and with a seed each meets the same sequence of faults.
        """
        self.counters.reset()
        self.successes.clear()
        self.window.reset()
        self._seed_draws()

    def _seed_draws(self) -> None:
        seed = self.config.seed
        self._fault_rng.seed(seed)
        self._latency_rng.seed(None if seed is None else f"latency-{seed}")

    def release(self) -> None:
        """End every hang now (and every later one at once): the server is shutting down."""
        self._released.set()

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        """Route one request."""
        path = request.path
        expected = _METHODS.get(path)
        if expected is None:
            return _error(
                404, f"No route {path}.", error_type="invalid_request_error", code="not_found"
            )
        if request.method != expected:
            return _error(
                405,
                f"Use {expected} for {path}, not {request.method}.",
                error_type="invalid_request_error",
                code="method_not_allowed",
            )
        if path == _STATS:
            return _json(200, self.stats().as_dict())
        if path == _STATS_RESET:
            self.reset()
            return _json(200, self.stats().as_dict())
        shared = self._shared
        if shared is not None:
            self._follow_resets(shared)
        counters = self.counters
        counters.enter(now())
        try:
            return await self._answer(request, chat=path == _CHAT)
        finally:
            counters.in_flight -= 1
            counters.last_at = now()
            if shared is not None:
                shared.publish(counters)

    async def _answer(self, request: web.BaseRequest, *, chat: bool) -> web.StreamResponse:
        counters = self.counters
        request_id = request.headers.get("x-request-id") or request.headers.get("idempotency-key")
        if request_id is not None and request_id in self.successes:
            counters.duplicates_after_success += 1
        try:
            parsed, body, cost = await _read(request, chat=chat)
        except BadRequest as exc:
            counters.bad_requests += 1
            return _error(
                400, exc.message, error_type="invalid_request_error", code=exc.code, param=exc.param
            )
        admission = self.window.try_admit(now(), cost)
        headers = rate_limit_headers(
            admission, max_requests=self.window.max_requests, max_tokens=self.window.max_tokens
        )
        if not admission.admitted:
            return self._refuse(admission, cost, headers)
        counters.tokens_admitted += cost
        return await self._admitted(request, parsed, body, headers, request_id)

    async def _admitted(
        self,
        request: web.BaseRequest,
        parsed: ChatRequest | None,
        body: bytes,
        headers: dict[str, str],
        request_id: str | None,
    ) -> web.StreamResponse:
        """Draw the fault, wait the latency, answer."""
        counters = self.counters
        fault = draw_fault(self.config.faults, self._fault_rng)
        if fault is Fault.HANG:
            counters.hung += 1
            await self._hang()
            return _drop(request)
        latency_s = draw_latency_s(self.config, self._latency_rng)
        if latency_s > 0.0:
            await asyncio.sleep(latency_s)
        if fault is Fault.FAIL:
            counters.errors_500 += 1
            return _error(
                500,
                "The server had an error while processing your request (mock fault).",
                error_type="server_error",
                code="server_error",
                headers=headers,
            )
        if fault is Fault.DROP:
            counters.dropped += 1
            return _drop(request)
        counters.ok += 1
        if request_id is not None:
            self.successes.add(request_id)
        if parsed is not None:
            answer = chat_completion(
                parsed, completion_id=f"chatcmpl-mock-{next(self._ids)}", created=int(wall())
            )
            return _json(200, answer, headers)
        # The echo answers the very bytes it was sent (they were checked to be JSON).
        return web.Response(body=body, content_type="application/json", headers=headers)

    def _refuse(self, admission: Admission, cost: int, headers: dict[str, str]) -> web.Response:
        """Answer a request the window did not admit: 400 if it never can be, else 429."""
        counters = self.counters
        if admission.never:
            counters.bad_requests += 1
            return _error(
                400,
                f"Request too large: it costs {cost} tokens and the limit is"
                f" {self.window.max_tokens} tokens per {self.window.window_s:g}s window."
                " Send fewer or shorter messages, or a smaller max_tokens.",
                error_type="invalid_request_error",
                code="request_too_large",
                headers=headers,
            )
        counters.rate_limited += 1
        unit = "requests" if admission.remaining_requests == 0 else "tokens"
        limit = self.window.max_requests if unit == "requests" else self.window.max_tokens
        headers.update(retry_after_headers(admission.retry_after_s))
        return _error(
            429,
            f"Rate limit reached for {unit}: limit {limit} per {self.window.window_s:g}s."
            f" Please try again in {admission.retry_after_s:.3f}s.",
            error_type=unit,
            code="rate_limit_exceeded",
            headers=headers,
        )

    async def _hang(self) -> None:
        """Wait until released (shutdown) or `hang_s` passes; the client may give up first."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.config.faults.hang_s):
                await self._released.wait()


async def _read(request: web.BaseRequest, *, chat: bool) -> tuple[ChatRequest | None, bytes, int]:
    """Return the parsed chat request (None for the echo), the body and the tokens to charge."""
    body = await request.read()
    parsed: ChatRequest | None = None
    if chat:
        parsed = parse_chat(body)
        cost = parsed.cost
    else:
        parse_json(body)
        cost = 1
    return parsed, body, cost_override(request.headers.get("x-mock-cost")) or cost


def _drop(request: web.BaseRequest) -> web.Response:
    """Close the connection without an answer.

    The returned response is never sent: aiohttp finds the transport closed, treats it as a
    client that went away, and ends the connection quietly.
    """
    transport = request.transport
    if transport is not None:
        transport.close()
    return web.Response(status=500)
