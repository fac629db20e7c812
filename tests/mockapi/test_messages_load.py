"""POST /v1/messages under load at twice its limits, on a virtual clock (no sockets)."""

import asyncio
import json
import random
from typing import Any, cast

from aiohttp import web
from multidict import CIMultiDict

from conveyor.mockapi import AnthropicLimits, MockConfig
from conveyor.mockapi.app import MockHandler
from conveyor.testing import VirtualClock

MESSAGES = "/v1/messages"
HELLO = {"model": "m", "max_tokens": 64, "messages": [{"role": "user", "content": "Hello"}]}


def tokens(input_tokens: int, output_tokens: int) -> dict[str, str]:
    return {"x-mock-input-tokens": str(input_tokens), "x-mock-output-tokens": str(output_tokens)}


class FakeRequest:
    """What the handler reads of a request: path, method, headers, body (no socket)."""

    def __init__(self, payload: dict[str, Any], headers: dict[str, str]) -> None:
        self.path = MESSAGES
        self.method = "POST"
        self.headers = CIMultiDict(headers)
        self.transport = None
        self._body = json.dumps(payload).encode()

    async def read(self) -> bytes:
        return self._body


def test_at_twice_the_limits_no_interval_admits_more_than_capacity_plus_rate():
    """30 virtual seconds offered at 2x every limit: each dimension stays within its bound.

    Requests and input are counted at arrival, output when each answer is produced (the
    output bucket's debt at the interval's end added to its bound). The mock also admits what
    the limits allow: at least 90% of ``rate * 30 s`` in each dimension.
    """
    limits = AnthropicLimits(rpm=120, itpm=6_000, otpm=3_000, burst_s=1.0)  # 2/s, 100/s, 50/s
    config = MockConfig(latency_ms=200.0, anthropic=limits, seed=1)
    clock = VirtualClock()
    rng = random.Random(7)
    duration_s = 30.0

    async def main() -> tuple[list[tuple[float, float, float]], MockHandler]:
        handler = MockHandler(config)
        admitted: list[tuple[float, float, float]] = []  # (time, requests, input)
        produced: list[tuple[float, float, float]] = []  # (time, output, debt after)

        async def one(at: float) -> None:
            await asyncio.sleep(at - clock.now)
            request = FakeRequest(HELLO, tokens(50, 25))  # 4/s: 200 input/s, 100 output/s
            response = await handler(cast("web.BaseRequest", request))
            assert isinstance(response, web.Response)
            if response.status == 429:
                return
            assert response.status == 200
            admitted.append((at, 1.0, 50.0))
            bucket = handler.messages.limiter.output
            assert bucket is not None
            produced.append((clock.now, 25.0, max(0.0, -bucket.level(clock.now))))

        times, at = [], 0.0
        while at < duration_s:
            times.append(at)
            at += rng.expovariate(4.0)
        await asyncio.gather(*(one(t) for t in times))
        return [(t, r, i) for t, r, i in admitted] + [(t, -o, d) for t, o, d in produced], handler

    events, handler = clock.run(main())
    arrivals = sorted((t, r, i) for t, r, i in events if r > 0)
    answers = sorted((t, -o, d) for t, o, d in events if o < 0)
    buckets = handler.messages.limiter
    assert buckets.requests is not None
    assert buckets.input is not None
    assert buckets.output is not None
    for i, (start, _, _) in enumerate(arrivals):
        for j in range(i, len(arrivals)):
            span = arrivals[j][0] - start
            count = j - i + 1
            assert count <= buckets.requests.capacity + buckets.requests.rate_per_s * span + 1e-6
            assert 50 * count <= buckets.input.capacity + buckets.input.rate_per_s * span + 1e-6
    for i, (start, _, _) in enumerate(answers):
        for j in range(i, len(answers)):
            end, _, debt = answers[j]
            output = 25 * (j - i + 1)
            bound = buckets.output.capacity + buckets.output.rate_per_s * (end - start) + debt
            assert output <= bound + 1e-6
    assert len(arrivals) >= 0.9 * 2.0 * duration_s
    stats = handler.stats()
    assert stats.messages_admitted == len(arrivals)
    assert stats.messages_rate_limited > 0.9 * len(arrivals)  # about half of 2x was refused
