"""``POST /v1/messages``: Anthropic's Messages route over token buckets, 529s and a spend cap.

The order a request meets (documented in docs/explanations/mock-api.md):

1. parse the body and the ``x-mock-*-tokens`` headers (400 ``invalid_request_error``);
2. the spend cap: a request whose input would take the account past it is a 429 naming the
   spend limit, with no ``retry-after`` (waiting does not help);
3. the buckets (`conveyor.mockapi.bucket`): input that can never fit the input bucket is a 400;
   a request short on any bucket is a 429 with ``retry-after``, naming the limits it hit;
   an admitted one gives its request and input tokens now;
4. the overloaded draw: ``overloaded_rate`` of the admitted requests are answered 529 at once
   (their request and input tokens stay taken; no output is produced, none is spent);
5. the fault draw and the latency, as on every route (500 ``api_error``, hang or drop);
6. the answer: its output tokens are taken from the output bucket (which may go into debt) and
   its input and output count against the spend cap.

Every answer carries ``request-id`` and the ``anthropic-ratelimit-*`` headers as they stand
when it is sent.
"""

from __future__ import annotations

import itertools
import math
import random
from typing import TYPE_CHECKING

from .._clock import now, wall
from .answers import drop, json_answer
from .bucket import MessagesLimiter
from .draws import Fault
from .headers import anthropic_rate_limit_headers
from .messages import MessagesRequest, anthropic_error, message_answer, parse_messages
from .protocol import BadRequest

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from aiohttp import web

    from .bucket import Decision
    from .config import MockConfig
    from .stats import Counters, SuccessLog

__all__ = ["MessagesRoute"]


class MessagesRoute:
    """The Messages route's state (buckets, spend, the overloaded draw) and its answers.

    Args:
        config: the mock's settings; `MockConfig.anthropic` holds this route's.
        counters: the mock's live counters.
        successes: the request ids answered 200.
        wait_fault: draws an admitted request's fault and waits its latency (or its hang);
            the mock's, shared by every route so that a seed gives one sequence of faults.
    """

    def __init__(
        self,
        config: MockConfig,
        *,
        counters: Counters,
        successes: SuccessLog,
        wait_fault: Callable[[], Awaitable[Fault]],
    ) -> None:
        self.limits = config.anthropic
        self._seed = config.seed
        self._counters = counters
        self._successes = successes
        self._wait_fault = wait_fault
        self._overloaded_rng = random.Random()
        self._ids = itertools.count(1)
        self.limiter = self._new_limiter()
        self.spent = 0  # input and output tokens of the 200 answers: what the cap counts

    def _new_limiter(self) -> MessagesLimiter:
        """Full buckets; the overloaded draw restarts with them (its own seeded source)."""
        seed = self._seed
        self._overloaded_rng.seed(None if seed is None else f"overloaded-{seed}")
        limits = self.limits
        return MessagesLimiter(
            rpm=limits.rpm, itpm=limits.itpm, otpm=limits.otpm, burst_s=limits.burst_s
        )

    def reset(self) -> None:
        """Start a fresh phase: full buckets, nothing spent, the overloaded draw reseeded."""
        self.limiter = self._new_limiter()
        self.spent = 0

    def headers(self, request_id: str) -> dict[str, str]:
        """Return the headers of an answer sent now: ``request-id`` and the rate limits."""
        headers = anthropic_rate_limit_headers(self.limiter.states(now()), wall_now_s=wall())
        headers["request-id"] = request_id
        return headers

    def error(
        self,
        status: int,
        error_type: str,
        message: str,
        *,
        request_id: str | None = None,
        extra: dict[str, str] | None = None,
    ) -> web.Response:
        """Return an Anthropic error answer, with this route's headers."""
        request_id = request_id or self._request_id()
        headers = self.headers(request_id)
        if extra:
            headers.update(extra)
        body = anthropic_error(error_type, message, request_id=request_id)
        return json_answer(status, body, headers)

    def _request_id(self) -> str:
        return f"req_mock{next(self._ids):016d}"

    async def answer(self, request: web.BaseRequest, client_id: str | None) -> web.StreamResponse:
        """Answer one ``POST /v1/messages`` (`client_id`: its ``x-request-id``, if any)."""
        counters = self._counters
        request_id = self._request_id()
        try:
            parsed = parse_messages(
                await request.read(),
                input_header=request.headers.get("x-mock-input-tokens"),
                output_header=request.headers.get("x-mock-output-tokens"),
            )
        except BadRequest as exc:
            counters.bad_requests += 1
            return self.error(400, "invalid_request_error", exc.message, request_id=request_id)
        refusal = self._admit(parsed, request_id)
        if refusal is not None:
            return refusal
        return await self._admitted(request, parsed, request_id, client_id)

    async def _admitted(
        self,
        request: web.BaseRequest,
        parsed: MessagesRequest,
        request_id: str,
        client_id: str | None,
    ) -> web.StreamResponse:
        """Draw the 529, then the fault and the latency, and answer."""
        counters = self._counters
        counters.messages_admitted += 1
        counters.messages_input_tokens += parsed.input_tokens
        rate = self.limits.overloaded_rate
        if rate > 0.0 and self._overloaded_rng.random() < rate:
            counters.overloaded += 1
            return self.error(529, "overloaded_error", "Overloaded", request_id=request_id)
        fault = await self._wait_fault()
        if fault is Fault.HANG:
            return drop(request)
        if fault is Fault.DROP:
            counters.dropped += 1
            return drop(request)
        if fault is Fault.FAIL:
            counters.errors_500 += 1
            message = "Internal server error (mock fault)."
            return self.error(500, "api_error", message, request_id=request_id)
        return self._produce(parsed, request_id, client_id)

    def _admit(self, parsed: MessagesRequest, request_id: str) -> web.Response | None:
        """Check the spend cap and the buckets; return the refusal, or None if admitted."""
        counters = self._counters
        cap = self.limits.spend_cap_tokens
        if cap is not None and self.spent + parsed.input_tokens > cap:
            counters.rate_limited += 1
            counters.messages_rate_limited += 1
            counters.messages_spend_limited += 1
            message = (
                "This request would exceed your organization's monthly spend limit of"
                f" {cap:,} tokens ({self.spent:,} spent; it needs {parsed.input_tokens:,} more)."
                " Raise the spend cap (--spend-cap-tokens) or start afresh (POST /stats/reset)."
            )
            return self.error(429, "rate_limit_error", message, request_id=request_id)
        decision = self.limiter.try_admit(now(), input_tokens=parsed.input_tokens)
        if decision.admitted:
            return None
        if decision.never:
            counters.bad_requests += 1
            return self.error(
                400, "invalid_request_error", self._never(parsed), request_id=request_id
            )
        counters.rate_limited += 1
        counters.messages_rate_limited += 1
        retry_after = {"retry-after": str(max(1, math.ceil(decision.retry_after_s - 1e-9)))}
        return self.error(
            429,
            "rate_limit_error",
            self._over(decision),
            request_id=request_id,
            extra=retry_after,
        )

    def _never(self, parsed: MessagesRequest) -> str:
        limits = self.limits
        bucket = self.limiter.input
        assert bucket is not None
        return (
            f"prompt is too long: {parsed.input_tokens:,} input tokens can never fit the"
            f" input-token bucket of {bucket.capacity:,g} ({limits.itpm:,g} input tokens per"
            f" minute, burst_s={limits.burst_s:g}). Send a shorter prompt, or raise --itpm or"
            " --burst."
        )

    def _over(self, decision: Decision) -> str:
        """Say which limits a refused request hit, and when it would fit."""
        limits = self.limits
        per_minute = {
            "requests": limits.rpm,
            "input tokens": limits.itpm,
            "output tokens": limits.otpm,
        }
        hit = " and ".join(f"{per_minute[name]:,g} {name} per minute" for name in decision.short)
        return (
            f"This request would exceed your organization's rate limit of {hit} (token"
            f" buckets holding {limits.burst_s:g} s of the rate, refilled continuously)."
            f" It would be admitted in {decision.retry_after_s:.3f} s."
        )

    def _produce(
        self, parsed: MessagesRequest, request_id: str, client_id: str | None
    ) -> web.Response:
        """Answer 200: the output is produced now, and taken and spent now."""
        counters = self._counters
        answer = message_answer(parsed, message_id="msg_mock" + request_id.removeprefix("req_mock"))
        output_tokens = int(answer["usage"]["output_tokens"])
        self.limiter.settle_output(now(), output_tokens=output_tokens)
        self.spent += parsed.input_tokens + output_tokens
        counters.messages_output_tokens += output_tokens
        counters.spent_tokens += parsed.input_tokens + output_tokens
        counters.ok += 1
        if client_id is not None:
            self._successes.add(client_id)
        return json_answer(200, answer, self.headers(request_id))
