"""The wrapped anthropic client's streams, settlement details, and what it leaves alone.

The official ``anthropic`` package against scripted answers through its HTTP seam
(`Scripted`): streams (the mock API does not stream), usage with prompt caching, the token
counting endpoint. Async tests run on a `VirtualClock`; the sync client's take no time.
"""

import asyncio
from typing import Any

import anthropic
import pytest

from conveyor import InvalidAnswer, Limiter, QuotaExhausted
from conveyor.limits.constraints import BUCKET_LATE_S, BUCKET_RESERVE
from conveyor.llm import limit_anthropic
from conveyor.testing import VirtualClock

from .claude_kit import (
    FAST_RETRY,
    MODEL,
    OVERLOADED,
    Scripted,
    as_json,
    as_stream,
    in_process,
    message,
    outputs,
    stream_events,
    sync_client,
    user,
)

STREAM = stream_events("Hello there.", input_tokens=25, output_tokens=15)
USAGE = {"input_tokens": 5, "output_tokens": 3}


def one_at_a_time() -> Limiter:
    return Limiter("claude", concurrency=1, output_tokens_per_minute=60_000, bucket_s=1)


def run(answers: list[Any], scenario: Any) -> tuple[Any, Scripted]:
    """Run `scenario(client, transport)` on a virtual clock, the client answered by `answers`."""
    clock = VirtualClock()
    transport = Scripted(answers, clock=lambda: clock.now)

    async def main() -> Any:
        return await scenario(in_process(transport), transport)

    return clock.run(main()), transport


def create(client: Any, **options: Any) -> Any:
    return client.messages.create(model=MODEL, max_tokens=64, messages=user("hi"), **options)


def test_a_stream_holds_its_slot_until_read_out_and_settles_the_final_usage():
    """stream=True: the next call waits while the stream is open; the last delta settles it."""
    limiter = one_at_a_time()

    async def scenario(raw: Any, transport: Scripted) -> tuple[list[str], int, list[float]]:
        client = limit_anthropic(raw, limiters=[limiter], retry=FAST_RETRY)
        stream = await create(client, stream=True)
        kinds = [(await stream.__anext__()).type]  # message_start: 1 output token so far
        waiting = asyncio.ensure_future(create(client))
        await asyncio.sleep(10)
        sent_while_open = len(transport.sent)
        kinds += [event.type async for event in stream]
        await waiting
        return kinds, sent_while_open, outputs(limiter)

    answers = [as_stream(STREAM), as_json(message(USAGE))]
    (kinds, sent_while_open, settled), transport = run(answers, scenario)
    assert kinds == [event["type"] for event in STREAM]
    assert sent_while_open == 1
    assert transport.sent[1] >= 10.0  # the second call went once the stream ended
    assert settled == [15.0, 3.0]  # the stream's final output, then the plain answer's


def test_the_stream_helper_holds_its_slot_for_its_block_and_settles_from_the_message():
    """messages.stream(): the block holds the slot; the accumulated message settles it."""
    limiter = one_at_a_time()

    async def scenario(raw: Any, transport: Scripted) -> tuple[str, int, list[float]]:
        client = limit_anthropic(raw, limiters=[limiter], retry=FAST_RETRY)
        async with client.messages.stream(model=MODEL, max_tokens=64, messages=user("hi")) as s:
            waiting = asyncio.ensure_future(create(client))
            await asyncio.sleep(10)
            sent_in_block = len(transport.sent)
            text = await s.get_final_text()
        await waiting
        return text, sent_in_block, outputs(limiter)

    answers = [as_stream(STREAM), as_json(message(USAGE))]
    (text, sent_in_block, settled), _ = run(answers, scenario)
    assert text == "Hello there."
    assert sent_in_block == 1
    assert settled == [15.0, 3.0]


def test_a_stream_whose_opening_is_overloaded_is_retried():
    """A 529 before the first event is retried through the limiter like any call."""
    limiter = one_at_a_time()

    async def scenario(raw: Any, transport: Scripted) -> list[str]:
        client = limit_anthropic(raw, limiters=[limiter], retry=FAST_RETRY)
        async with client.messages.stream(model=MODEL, max_tokens=64, messages=user("hi")) as s:
            return [event.type async for event in s if event.type.startswith("message")]

    kinds, transport = run([as_json(OVERLOADED, 529), as_stream(STREAM)], scenario)
    assert kinds == ["message_start", "message_delta", "message_stop"]
    assert (len(transport.sent), limiter.admitted, limiter.pushbacks) == (2, 2, 1)
    assert outputs(limiter) == [15.0]


def test_an_error_inside_a_stream_reaches_the_reader_unretried_and_frees_the_slot():
    """overloaded_error after HTTP 200 is raised to the reader, pushed back, and not retried."""
    limiter = one_at_a_time()
    broken = [*STREAM[:3], {"type": "error", "error": OVERLOADED["error"]}]

    async def scenario(raw: Any, transport: Scripted) -> tuple[str, Any]:
        client = limit_anthropic(raw, limiters=[limiter], retry=FAST_RETRY)
        stream = await create(client, stream=True)
        with pytest.raises(anthropic.APIStatusError) as caught:
            async for _ in stream:
                pass
        body = caught.value.body
        assert isinstance(body, dict)
        return body["error"]["type"], await create(client)

    (kind, after), transport = run([as_stream(broken), as_json(message(USAGE))], scenario)
    assert kind == "overloaded_error"
    assert after.usage.output_tokens == 3  # the slot was free for the next call
    assert (len(transport.sent), limiter.pushbacks) == (2, 1)
    assert outputs(limiter) == [1.0, 3.0]  # the broken stream: what it reported


def test_a_stream_closed_early_frees_its_slot_and_settles_what_it_reported():
    """Closing a stream after its first event releases the slot with message_start's usage."""
    limiter = one_at_a_time()

    async def scenario(raw: Any, transport: Scripted) -> Any:
        client = limit_anthropic(raw, limiters=[limiter], retry=FAST_RETRY)
        async with await create(client, stream=True) as stream:
            await stream.__anext__()
        return await create(client)

    after, transport = run([as_stream(STREAM), as_json(message(USAGE))], scenario)
    assert after.usage.output_tokens == 3
    assert outputs(limiter) == [1.0, 3.0]
    assert len(transport.sent) == 2


def test_a_sync_clients_streams_are_settled_too():
    """anthropic.Anthropic: stream=True read out, then messages.stream(); both settled."""
    limiter = one_at_a_time()
    transport = Scripted([as_stream(STREAM), as_stream(STREAM)])
    client = limit_anthropic(sync_client(transport), limiters=[limiter], retry=FAST_RETRY)
    kinds = [event.type for event in create(client, stream=True)]
    with client.messages.stream(model=MODEL, max_tokens=64, messages=user("hi")) as s:
        text = s.get_final_text()
    assert kinds[-1] == "message_stop"
    assert text == "Hello there."
    assert outputs(limiter) == [15.0, 15.0]
    assert limiter.admitted == 2


def test_cache_creation_counts_as_input_and_cache_reads_toward_nothing():
    """An answer reading 5,000 cached tokens and writing 500 takes 510 from the input bucket.

    The bucket holds 1,000 (60,000 a minute, bucket_s=1) and refills at 990 a second (1%
    under the rate), the first call taken from it as of BUCKET_LATE_S later (the API sees it
    late). The next call needs 600 and leaves BUCKET_RESERVE of the bucket (200): it waits that
    plus (800 - 490) / 990 = 0.313 s. Counting cache reads, it would wait over 5 s; leaving
    creation out, 0.111 s less.
    """
    limiter = Limiter("claude", input_tokens_per_minute=60_000, bucket_s=1)
    usage = {
        "input_tokens": 10,
        "cache_creation_input_tokens": 500,
        "cache_read_input_tokens": 5_000,
        "output_tokens": 5,
    }

    async def scenario(raw: Any, transport: Scripted) -> None:
        client = limit_anthropic(raw, limiters=[limiter], retry=FAST_RETRY)
        await create(client)
        await client.messages.create(model=MODEL, max_tokens=64, messages=user("x" * 2_400))

    _, transport = run([as_json(message(usage)), as_json(message(USAGE))], scenario)
    assert transport.sent[0] == 0.0
    kept = BUCKET_RESERVE * 1_000
    assert transport.sent[1] == pytest.approx(BUCKET_LATE_S + (600 + kept - 490) / 990, abs=1e-6)


def test_count_tokens_and_batches_are_the_clients_own_and_with_options_stays_limited():
    """count_tokens is not admitted by the limiter; with_options(...) keeps the limits."""
    limiter = Limiter("claude", requests_per_minute=600)
    counted = {"input_tokens": 12}

    async def scenario(raw: Any, transport: Scripted) -> Any:
        client = limit_anthropic(raw, limiters=[limiter], retry=FAST_RETRY)
        assert client.messages.batches is raw.messages.batches
        assert client.models is raw.models
        tokens = await client.messages.count_tokens(model=MODEL, messages=user("hi"))
        admitted_after_count = limiter.admitted
        answer = await create(client.with_options(timeout=5.0))
        return tokens.input_tokens, admitted_after_count, answer.usage.output_tokens

    result, transport = run([as_json(counted), as_json(message(USAGE))], scenario)
    assert result == (12, 0, 3)
    assert transport.paths == ["/v1/messages/count_tokens", "/v1/messages"]
    assert limiter.admitted == 1


def test_an_answer_check_retries_a_cut_off_answer_through_the_limiter():
    """validate= gets each answer; its InvalidAnswer is retried, taking a slot again."""
    limiter = Limiter("claude", requests_per_minute=600)

    def ended(answer: Any) -> None:
        if answer.stop_reason != "end_turn":
            raise InvalidAnswer("length", f"stop_reason {answer.stop_reason}", answer=answer)

    async def scenario(raw: Any, transport: Scripted) -> Any:
        client = limit_anthropic(raw, limiters=[limiter], retry=FAST_RETRY, validate=ended)
        return await create(client)

    cut = as_json(message(USAGE, stop_reason="max_tokens"))
    answer, _ = run([cut, as_json(message(USAGE))], scenario)
    assert answer.stop_reason == "end_turn"
    assert limiter.admitted == 2


def test_a_refusal_by_a_later_limiter_gives_the_earlier_slots_back():
    """The second limiter halted: the call fails at once, the first is not halted nor charged.

    The first limiter's input bucket holds 1,000 tokens; the refused call had reserved 700 of
    it. Given back, the next call of 700 goes at once (leaving the bucket's reserve).
    """
    first = Limiter("org", input_tokens_per_minute=60_000, bucket_s=1)
    second = Limiter("model")
    second.halt("This request would exceed your organization's monthly spend limit.")
    prompt = user("x" * 2_800)  # 700 tokens

    async def scenario(raw: Any, transport: Scripted) -> None:
        both = limit_anthropic(raw, limiters=[first, second], retry=FAST_RETRY)
        with pytest.raises(QuotaExhausted) as caught:
            await both.messages.create(model=MODEL, max_tokens=64, messages=prompt)
        assert caught.value is second.halted
        only_first = limit_anthropic(raw, limiters=[first], retry=FAST_RETRY)
        await only_first.messages.create(model=MODEL, max_tokens=64, messages=prompt)

    _, transport = run([as_json(message(USAGE))], scenario)
    assert first.halted is None
    assert transport.sent == [0.0]
