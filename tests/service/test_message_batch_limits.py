"""A Message Batch through a connection with Anthropic's limits, against the mock's buckets.

The mock keeps Anthropic's token buckets (requests, input and output tokens, each holding a
second of its rate) and answers 429 to a request over any of them. The service's connection
is given the same limits: its shared limiter charges each request its prompt's input tokens
and its ``max_tokens`` of output, and settles both from the answer's usage. Real time (the
mock listens on 127.0.0.1): the batch takes about a second, bounded by `until_ended`'s 10 s.
"""

import asyncio
from typing import Any

from conveyor.mockapi import MockConfig
from conveyor.mockapi.config import AnthropicLimits

from .anthropic_kit import request, results, service, until_ended

N = 30
PROMPT = "x" * 400  # 100 input tokens, as the mock and the limiter count them
ITPM = 90_000  # 1,500 a second: 15 prompts at once, then 15 a second
OTPM = 6_300  # 105 a second: 15 of the mock's 7-token answers at once, then 15 a second


def test_a_message_batch_keeps_the_connection_s_input_and_output_limits(tmp_path):
    """30 requests within 1,500 input and 105 output tokens a second: all answered, no 429.

    Each asks for up to 256 output tokens and gets 7: a limiter that kept the bound, or one
    that ignored the output limit, would be refused or draw 429s. The batch needs about a
    second of the buckets' refill after their first burst: the limits did bind.
    """
    mock = MockConfig(
        latency_ms=20,
        latency="fixed",
        anthropic=AnthropicLimits(itpm=ITPM, otpm=OTPM, burst_s=1.0),
    )
    limits = {"input_tokens_per_minute": ITPM, "output_tokens_per_minute": OTPM, "bucket_s": 1}

    async def main() -> tuple[Any, list[Any], Any, dict[str, Any]]:
        async with service(tmp_path, mock=mock, connection_limits=limits) as s:
            requests = [request(f"r{i}", f"{i:03d}{PROMPT[3:]}", max_tokens=256) for i in range(N)]
            batch = await s.client.messages.batches.create(requests=requests)
            done = await until_ended(s.client, batch.id)
            lines = await results(s.client, batch.id)
            [job] = (await s.http.get("/v1/jobs")).json()["data"]
            return done, lines, s.upstream.stats(), job

    done, lines, stats, job = asyncio.run(main())
    assert done.request_counts.succeeded == N
    assert {line.result.type for line in lines} == {"succeeded"}
    assert stats.rate_limited == 0
    assert stats.requests == N
    assert stats.messages_input_tokens == 100 * N
    assert stats.messages_output_tokens == 7 * N
    assert stats.active_s >= 0.8  # the second 15 waited for the buckets to refill
    units = {limit["unit"] for limit in job["limits"]}
    assert units == {"input_tokens", "output_tokens"}
