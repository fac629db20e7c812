"""The request handler: routes, the order of checks, the answers (thin, over the pure parts).

``POST /v1/messages`` (Anthropic's shape) is `conveyor.mockapi.messages_route`'s. The order a
request to the OpenAI routes meets (documented in docs/explanations/mock-api.md):

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
from typing import TYPE_CHECKING

from aiohttp import web

from .._clock import now, wall
from .answers import drop, json_answer
from .draws import Fault, draw_fault, draw_latency_s
from .headers import rate_limit_headers, retry_after_headers
from .messages_route import MessagesRoute
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
_MESSAGES = "/v1/messages"
_STATS = "/stats"
_STATS_RESET = "/stats/reset"
_METHODS = {
    _CHAT: "POST",
    _ECHO: "POST",
    _MESSAGES: "POST",
    _STATS: "GET",
    _STATS_RESET: "POST",
}


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
    return json_answer(status, body, headers)


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
        self.messages = MessagesRoute(
            config, counters=self.counters, successes=self.successes, wait_fault=self._wait_fault
        )

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
        self.messages.reset()
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
        refusal = self._misrouted(path, request.method)
        if refusal is not None:
            return refusal
        if path == _STATS:
            return json_answer(200, self.stats().as_dict())
        if path == _STATS_RESET:
            self.reset()
            return json_answer(200, self.stats().as_dict())
        shared = self._shared
        if shared is not None:
            self._follow_resets(shared)
        counters = self.counters
        counters.enter(now())
        request_id = request.headers.get("x-request-id") or request.headers.get("idempotency-key")
        if request_id is not None and request_id in self.successes:
            counters.duplicates_after_success += 1
        try:
            if path == _MESSAGES:
                return await self.messages.answer(request, request_id)
            return await self._answer(request, request_id, chat=path == _CHAT)
        finally:
            counters.in_flight -= 1
            counters.last_at = now()
            if shared is not None:
                shared.publish(counters)

    def _misrouted(self, path: str, method: str) -> web.Response | None:
        """Return the 404 or 405 for an unknown path or method (in the route's shape), or None."""
        expected = _METHODS.get(path)
        if expected is None:
            if path.startswith(_MESSAGES):
                return self.messages.error(404, "not_found_error", f"No route {path}.")
            return _error(
                404, f"No route {path}.", error_type="invalid_request_error", code="not_found"
            )
        if method == expected:
            return None
        message = f"Use {expected} for {path}, not {method}."
        if path == _MESSAGES:
            return self.messages.error(405, "invalid_request_error", message)
        return _error(405, message, error_type="invalid_request_error", code="method_not_allowed")

    async def _answer(
        self, request: web.BaseRequest, request_id: str | None, *, chat: bool
    ) -> web.StreamResponse:
        counters = self.counters
        try:
            parsed, body, cost = await _read(request, chat=chat)
        except BadRequest as exc:
            counters.bad_requests += 1
            return _error(
                400, exc.message, error_type="invalid_request_error", code=exc.code, param=exc.param
            )
        admission = self.window.try_admit(now(), cost)
        config = self.config
        headers = rate_limit_headers(
            admission, rpm=config.rpm, tpm=config.tpm, window_s=config.window_s
        )
        if not admission.admitted:
            if not admission.never:
                if chat:
                    counters.chat_rate_limited += 1
                else:
                    counters.echo_rate_limited += 1
            return self._refuse(admission, cost, headers)
        if chat:
            counters.chat_admitted += 1
        else:
            counters.echo_admitted += 1
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
        fault = await self._wait_fault()
        if fault is Fault.HANG:
            return drop(request)
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
            return drop(request)
        counters.ok += 1
        if request_id is not None:
            self.successes.add(request_id)
        if parsed is not None:
            answer = chat_completion(
                parsed, completion_id=f"chatcmpl-mock-{next(self._ids)}", created=int(wall())
            )
            return json_answer(200, answer, headers)
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

    async def _wait_fault(self) -> Fault:
        """Draw an admitted request's fault and wait its latency, or its hang (every route)."""
        fault = draw_fault(self.config.faults, self._fault_rng)
        if fault is Fault.HANG:
            self.counters.hung += 1
            await self._hang()
            return fault
        latency_s = draw_latency_s(self.config, self._latency_rng)
        if latency_s > 0.0:
            await asyncio.sleep(latency_s)
        return fault

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
