"""Anthropic's Message Batches API served by Conveyor, driven by the official ``anthropic`` package.

The service runs in-process and its connection is the mock API on 127.0.0.1 (`anthropic_kit`):
latencies are 1 ms (50 ms where a batch must still be running when it is cancelled or expires).
Expiry moves the wall clock the records read (`conveyor._clock.wall`) a day ahead instead of
waiting for it.
"""

import asyncio
import json
from datetime import timedelta
from typing import Any

import anthropic
import pytest

from conveyor import _clock
from conveyor.service.config import Limits

from .anthropic_kit import (
    MODEL,
    Setup,
    added,
    request,
    results,
    service,
    until_ended,
    until_started,
)


def test_a_batch_round_trips_through_the_official_sdk(tmp_path):
    """Create, poll until ended, read results: every custom_id once, each with its usage."""

    async def main() -> Any:
        async with service(tmp_path) as s:
            made = await s.client.messages.batches.create(
                requests=[request(f"r{i}", f"question {i}") for i in range(20)]
            )
            done = await until_ended(s.client, made.id)
            lines = await results(s.client, made.id)
            jobs = (await s.http.get("/v1/jobs")).json()["data"]
            return made, done, lines, jobs, s.upstream.stats()

    made, done, lines, jobs, stats = asyncio.run(main())
    assert made.id.startswith("msgbatch_")
    assert (made.type, made.processing_status) == ("message_batch", "in_progress")
    assert made.results_url is None
    assert made.ended_at is None
    assert made.expires_at - made.created_at == timedelta(hours=24)
    assert added(made.request_counts) == 20
    assert done.processing_status == "ended"
    assert done.ended_at is not None
    assert done.ended_at >= done.created_at
    assert done.results_url == f"http://localhost/v1/messages/batches/{made.id}/results"
    counts = done.request_counts
    assert (counts.succeeded, counts.processing, counts.errored) == (20, 0, 0)
    assert sorted(r.custom_id for r in lines) == sorted(f"r{i}" for i in range(20))
    assert {r.result.type for r in lines} == {"succeeded"}
    for line in lines:
        message = line.result.message
        assert (message.type, message.role, message.model) == ("message", "assistant", MODEL)
        assert message.usage.input_tokens > 0
        assert message.usage.output_tokens > 0
    assert stats.messages_admitted == 20
    # Underneath, a job of the connection's http task, like any other, its spend counted.
    [job] = jobs
    assert (job["task"], job["status"]) == ("http:mock", "completed")
    assert job["counts"]["succeeded"] == 20
    assert job["summary"]["tokens_in"] == sum(r.result.message.usage.input_tokens for r in lines)
    assert job["summary"]["tokens_out"] == sum(r.result.message.usage.output_tokens for r in lines)


def test_a_malformed_request_errors_alone_and_is_never_sent(tmp_path):
    """Bad params, custom_ids and stream fail their request only (invalid_request_error)."""
    bad: list[Any] = [
        {"custom_id": "no-params"},
        {"custom_id": "params-a-list", "params": [1]},
        {"custom_id": "no-model", "params": {"max_tokens": 5, "messages": [{}]}},
        request("zero-tokens", max_tokens=0),
        request("no-messages", messages=[]),
        request("streams", stream=True),
        request("has space"),
        request("x" * 65),
        {**request("extra"), "priority": 1},
        "not an object",
        request("twice", "first"),
        request("twice", "second"),
    ]
    good = [request("ok-1"), request("ok-2")]
    refused_upstream = request("bad-role", messages=[{"role": "robot", "content": "hi"}])

    async def main() -> Any:
        async with service(tmp_path) as s:
            made = await s.client.messages.batches.create(
                requests=[good[0], *bad, refused_upstream, good[1]]
            )
            done = await until_ended(s.client, made.id)
            return done, await results(s.client, made.id), s.upstream.stats()

    done, lines, stats = asyncio.run(main())
    by_type: dict[str, list[Any]] = {}
    for line in lines:
        by_type.setdefault(line.result.type, []).append(line)
    assert sorted(r.custom_id for r in by_type["succeeded"]) == ["ok-1", "ok-2"]
    errored = by_type["errored"]
    assert len(errored) == len(bad) + 1
    assert {r.result.error.error.type for r in errored} == {"invalid_request_error"}
    messages = {r.custom_id: r.result.error.error.message for r in errored}
    assert "params.max_tokens" in messages["zero-tokens"]
    assert "params.model" in messages["no-model"]
    assert "params.messages" in messages["no-messages"]
    assert "stream" in messages["streams"]
    assert "custom_id" in messages["has space"]
    assert "more than one request" in messages["twice"]
    assert messages["bad-role"]  # the upstream's own 400, passed on
    # Only the good requests and the one the upstream refused were sent.
    assert stats.requests == 3
    counts = done.request_counts
    assert (counts.succeeded, counts.errored, added(counts)) == (2, len(bad) + 1, len(lines))


def test_a_malformed_batch_body_is_a_400_in_anthropics_shape(tmp_path):
    """Not JSON, not an object, no requests, none, too many, unknown fields: 400 each."""
    one = request("a")
    bodies = {
        b"{oops": "not valid JSON",
        b"[]": "JSON object",
        b"{}": "requests",
        b'{"requests": {}}': "requests",
        b'{"requests": []}': "at least 1",
        json.dumps({"requests": [one] * 4}).encode(): "over the 3",
        json.dumps({"requests": [one], "model": "x"}).encode(): "model",
    }

    async def main() -> list[Any]:
        async with service(tmp_path, limits=Limits(max_items_per_job=3)) as s:
            answers = [await s.http.post("/v1/messages/batches", content=body) for body in bodies]
            with pytest.raises(anthropic.BadRequestError) as raised:
                await s.client.messages.batches.create(requests=[])
            listed = await s.client.messages.batches.list()
            return [*answers, raised.value, listed]

    *answers, raised, listed = asyncio.run(main())
    for answer, expected in zip(answers, bodies.values(), strict=True):
        assert answer.status_code == 400, answer.text
        body = answer.json()
        assert (body["type"], body["error"]["type"]) == ("error", "invalid_request_error")
        assert expected in body["error"]["message"]
    assert raised.body["error"]["type"] == "invalid_request_error"
    assert listed.data == []  # nothing was made


def test_a_batch_over_its_size_limit_is_a_413_request_too_large(tmp_path):
    """A body past the limit is refused as it streams in, in Anthropic's shape."""
    requests = [request(f"r{i}", "x" * 200) for i in range(20)]

    async def main() -> Any:
        async with service(tmp_path, limits=Limits(max_file_bytes=2_000)) as s:
            with pytest.raises(anthropic.APIStatusError) as raised:
                await s.client.messages.batches.create(requests=requests)
            return raised.value

    error = asyncio.run(main())
    assert error.status_code == 413
    assert error.body["error"]["type"] == "request_too_large"
    assert "2,000 bytes" in error.body["error"]["message"]


def test_an_unknown_batch_is_a_404_not_found_error_on_every_route(tmp_path):
    """Retrieve, cancel, delete and results of a made-up id: NotFoundError, Anthropic's shape."""

    async def main() -> list[Any]:
        raised: list[Any] = []
        async with service(tmp_path) as s:
            batches = s.client.messages.batches
            for call in (batches.retrieve, batches.cancel, batches.delete, batches.results):
                for batch_id in ("msgbatch_" + "0" * 32, "../../etc/passwd", "nope"):
                    with pytest.raises(anthropic.NotFoundError) as error:
                        await call(batch_id)
                    raised.append(error.value)
            route = await s.http.get("/v1/messages/nowhere")
            return [*raised, route]

    *raised, route = asyncio.run(main())
    assert len(raised) == 12
    for error in raised:
        assert error.body["type"] == "error"
        assert error.body["error"]["type"] == "not_found_error"
    assert route.status_code == 404
    assert route.json()["error"]["type"] == "not_found_error"


def test_cancelling_mid_way_cancels_the_rest_and_the_counts_add_up(tmp_path):
    """Cancel while running: canceling, then ended; finished answers kept, the rest canceled."""

    async def main() -> Any:
        async with service(tmp_path, latency_ms=50.0) as s:
            made = await s.client.messages.batches.create(
                requests=[request(f"r{i}", f"q {i}") for i in range(400)]
            )
            await until_started(s.client, made.id)
            cancelling = await s.client.messages.batches.cancel(made.id)
            done = await until_ended(s.client, made.id)
            again = await s.client.messages.batches.cancel(made.id)
            return cancelling, done, again, await results(s.client, made.id)

    cancelling, done, again, lines = asyncio.run(main())
    assert cancelling.processing_status in {"canceling", "ended"}
    assert cancelling.cancel_initiated_at is not None
    counts = done.request_counts
    assert 0 < counts.succeeded < 400
    assert counts.canceled > 0
    assert counts.succeeded + counts.canceled + counts.errored == 400
    assert counts.processing == counts.expired == 0
    assert again.cancel_initiated_at == done.cancel_initiated_at  # an ended batch is left as is
    assert len(lines) == 400
    assert len({r.custom_id for r in lines}) == 400
    kinds = [r.result.type for r in lines]
    assert kinds.count("succeeded") == counts.succeeded
    assert kinds.count("canceled") == counts.canceled


def test_a_batch_past_its_24_hours_ends_with_its_unfinished_requests_expired(tmp_path, monkeypatch):
    """A day later, a read stops the job; what finished is kept, the rest is expired."""
    real_wall = _clock.wall

    async def main() -> Any:
        async with service(tmp_path, latency_ms=50.0) as s:
            made = await s.client.messages.batches.create(
                requests=[request(f"r{i}", f"q {i}") for i in range(400)]
            )
            await until_started(s.client, made.id)
            # A day and a second later, as the batch's records see it: no waiting in real time.
            monkeypatch.setattr(_clock, "wall", lambda: real_wall() + 86_401)
            done = await until_ended(s.client, made.id)
            return done, await results(s.client, made.id)

    done, lines = asyncio.run(main())
    counts = done.request_counts
    assert 0 < counts.succeeded < 400
    assert counts.expired == 400 - counts.succeeded
    assert counts.canceled == counts.processing == 0
    assert done.cancel_initiated_at is None
    kinds = [r.result.type for r in lines]
    assert kinds.count("expired") == counts.expired
    assert kinds.count("succeeded") == counts.succeeded


def test_a_batch_nobody_reads_expires_by_the_services_sweep(tmp_path, monkeypatch):
    """Past its time and never read: the sweep stops its job and records its end.

    The sweep runs every 20 ms; the wait for it reads the record in the store (never the API,
    whose reads would expire the batch themselves), every 20 ms, bounded by 10 s.
    """
    real_wall = _clock.wall

    async def stored(s: Setup) -> dict[str, Any]:
        [row] = await s.asgi.state.service.files.store.batches("default", "anthropic")
        return json.loads(row.record)  # type: ignore[no-any-return]

    async def main() -> Any:
        async with service(tmp_path, latency_ms=50.0, sweep_s=0.02) as s:
            made = await s.client.messages.batches.create(
                requests=[request(f"r{i}", f"q {i}") for i in range(400)]
            )
            await until_started(s.client, made.id)
            before = await stored(s)
            monkeypatch.setattr(_clock, "wall", lambda: real_wall() + 86_401)
            async with asyncio.timeout(10):
                while (await stored(s))["ended_at"] is None:  # noqa: ASYNC110 - polls the record
                    await asyncio.sleep(0.02)
            after = await stored(s)
            done = await s.client.messages.batches.retrieve(made.id)
            return before, after, done

    before, after, done = asyncio.run(main())
    assert (before["expired_at"], before["ended_at"]) == (None, None)
    assert after["expired_at"] is not None
    assert done.processing_status == "ended"
    assert done.request_counts.expired > 0
    assert done.request_counts.succeeded + done.request_counts.expired == 400


def test_batches_are_listed_newest_first_in_pages_both_ways(tmp_path):
    """after_id pages on to older batches, before_id back to newer; the SDK follows both."""

    async def main() -> Any:
        async with service(tmp_path) as s:
            batches = s.client.messages.batches
            made = [(await batches.create(requests=[request("a")])).id for _ in range(5)]
            newest = made[::-1]
            first = await batches.list(limit=2)
            after = await batches.list(limit=2, after_id=newest[1])
            before = await batches.list(limit=2, before_id=newest[3])
            last = await batches.list(limit=2, before_id=newest[1])
            every = [b.id async for b in batches.list(limit=2)]
            back = [b.id async for b in batches.list(limit=2, before_id=newest[4])]
            queries = ("limit=0", "limit=1001", "limit=x", f"after_id=a&before_id={made[0]}")
            bad = [await s.http.get(f"/v1/messages/batches?{q}") for q in queries]
            return newest, first, after, before, last, every, back, bad

    newest, first, after, before, last, every, back, bad = asyncio.run(main())
    assert [b.id for b in first.data] == newest[:2]
    assert (first.has_more, first.first_id, first.last_id) == (True, newest[0], newest[1])
    assert [b.id for b in after.data] == newest[2:4]
    assert after.has_more
    assert [b.id for b in before.data] == newest[1:3]
    assert before.has_more
    assert ([b.id for b in last.data], last.has_more) == (newest[:1], False)
    assert every == newest
    assert sorted(back) == sorted(newest[:4])
    for answer in bad:
        assert answer.status_code == 400
        assert answer.json()["error"]["type"] == "invalid_request_error"


def test_only_an_ended_batch_can_be_deleted(tmp_path):
    """Delete while processing is a 400; once ended it is gone from reads and the list."""

    async def main() -> Any:
        async with service(tmp_path, latency_ms=50.0) as s:
            batches = s.client.messages.batches
            made = await batches.create(requests=[request(f"r{i}") for i in range(200)])
            with pytest.raises(anthropic.BadRequestError) as early:
                await batches.delete(made.id)
            await batches.cancel(made.id)
            await until_ended(s.client, made.id)
            deleted = await batches.delete(made.id)
            with pytest.raises(anthropic.NotFoundError):
                await batches.retrieve(made.id)
            return made, early.value, deleted, await batches.list()

    made, early, deleted, listed = asyncio.run(main())
    assert early.body["error"]["type"] == "invalid_request_error"
    assert "still processing" in early.body["error"]["message"]
    assert (deleted.id, deleted.type) == (made.id, "message_batch_deleted")
    assert listed.data == []


def test_results_before_the_end_are_a_400(tmp_path):
    """The results URL answers once the batch has ended, and says so before."""

    async def main() -> Any:
        async with service(tmp_path, latency_ms=50.0) as s:
            made = await s.client.messages.batches.create(
                requests=[request(f"r{i}") for i in range(200)]
            )
            early = await s.http.get(f"/v1/messages/batches/{made.id}/results")
            await s.client.messages.batches.cancel(made.id)
            await until_ended(s.client, made.id)
            return early

    early = asyncio.run(main())
    assert early.status_code == 400
    assert "has not ended" in early.json()["error"]["message"]
