"""A batch of Claude Messages lines on virtual time, against a scripted fake of the API."""

import itertools
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from conveyor import ConfigError, Retry
from conveyor.http import Batch, BatchFiles, BatchLimits, BatchResult, Endpoint, RawAnswer, prepare
from conveyor.testing import VirtualClock

from .fakes import FakeAPI, Script
from .helpers import read_results

KEY = "sk-ant-api03-secret-0123456789abcdef"  # a made-up test value
MODEL = "claude-haiku-4-5"


class _Half:
    def random(self) -> float:
        return 0.5


def params(i: int = 0, *, max_tokens: int = 64) -> dict[str, Any]:
    """A Messages request of 30 input tokens: 40 system and 80 message characters."""
    return {
        "model": MODEL,
        "max_tokens": max_tokens,
        "system": "s" * 40,
        "messages": [{"role": "user", "content": f"{i:04d}" + "u" * 76}],
    }


def write_lines(path: Path, n: int, **extra: Any) -> list[str]:
    """`n` lines in Anthropic's batch format; return their ids."""
    ids = [f"c{i}" for i in range(n)]
    path.write_text(
        "".join(
            json.dumps({"custom_id": cid, "params": params(i), **extra}) + "\n"
            for i, cid in enumerate(ids)
        )
    )
    return ids


def message(
    text: str = "ok", *, stop: str = "end_turn", input_tokens: int = 30, output_tokens: int = 10
) -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [{"type": "text", "text": text}],
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
    }


def answer(status: int, body: Any, headers: dict[str, str] | None = None) -> RawAnswer:
    data = json.dumps(body).encode()
    return RawAnswer(status, {"content-type": "application/json", **(headers or {})}, data)


def error(status: int, kind: str, text: str, headers: dict[str, str] | None = None) -> RawAnswer:
    """Anthropic's error shape."""
    body = {"type": "error", "error": {"type": kind, "message": text}, "request_id": "req_1"}
    return answer(status, body, headers)


async def run_batch(
    tmp_path: Path,
    api: FakeAPI,
    *,
    limits: BatchLimits | None = None,
    endpoint: Endpoint | None = None,
    attempts: int = 4,
) -> tuple[Batch, BatchResult]:
    files = BatchFiles(input=tmp_path / "in.jsonl", output=tmp_path / "out.jsonl")
    plan = prepare(files, endpoint or Endpoint(base_url="https://api.anthropic.com"))
    batch = Batch(
        plan,
        limits=limits or BatchLimits(concurrency=4),
        retry=Retry(attempts=attempts, rng=_Half()),
        transport=api,
    )
    try:
        return batch, await batch.run()
    finally:
        plan.close()


# -- headers -----------------------------------------------------------------------------------


def test_anthropic_version_is_sent_to_anthropic_unless_the_line_or_run_names_one(tmp_path, run):
    """Messages and other Anthropic routes get 2023-06-01; chat does not; a line's own wins."""
    lines = [
        {"custom_id": "plain", "params": params()},
        {"custom_id": "own", "params": params(), "headers": {"Anthropic-Version": "2099-01-01"}},
        {"custom_id": "count", "url": "/v1/messages/count_tokens", "body": {"model": MODEL}},
        {"custom_id": "chat", "url": "/v1/chat/completions", "body": {"messages": []}},
    ]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    api = FakeAPI(lambda n, body, headers: answer(200, message()))
    run(run_batch(tmp_path, api, limits=BatchLimits(concurrency=1)))
    sent = [{k.lower(): v for k, v in h.items()} for h in api.headers]
    assert [h.get("anthropic-version") for h in sent] == [
        "2023-06-01",
        "2099-01-01",
        "2023-06-01",
        None,
    ]
    # One header each, never the default beside the line's own.
    assert all(sum(k.lower() == "anthropic-version" for k in h) <= 1 for h in api.headers)


def test_the_runs_anthropic_version_replaces_the_default(tmp_path, run):
    """--header 'anthropic-version: ...' (any case) is sent instead of the default."""
    write_lines(tmp_path / "in.jsonl", 2)
    api = FakeAPI(lambda n, body, headers: answer(200, message()))
    endpoint = Endpoint(
        base_url="https://api.anthropic.com", headers=(("Anthropic-Version", "2024-10-22"),)
    )
    run(run_batch(tmp_path, api, endpoint=endpoint))
    for headers in api.headers:
        assert [v for k, v in headers.items() if k.lower() == "anthropic-version"] == ["2024-10-22"]


def test_the_api_key_is_sent_and_never_written(tmp_path, run):
    """x-api-key from the environment goes with every request; an echo of it is redacted."""
    write_lines(tmp_path / "in.jsonl", 2)

    def script(n, body, headers):
        if n == 1:
            return error(401, "authentication_error", f"invalid x-api-key: {KEY}")
        return answer(200, message(f"your key is {KEY}"))

    api = FakeAPI(script)
    endpoint = Endpoint(base_url="https://api.anthropic.com", secret_headers=(("x-api-key", KEY),))
    run(run_batch(tmp_path, api, endpoint=endpoint, attempts=1))
    assert all(h["x-api-key"] == KEY for h in api.headers)
    text = (tmp_path / "out.jsonl").read_text()
    assert KEY not in text
    assert text.count("[redacted]") >= 2  # the error's message and the answer's text


# -- limits --------------------------------------------------------------------------------------


def starts_of(
    clock: VirtualClock, script_answer: Callable[[int], RawAnswer]
) -> tuple[list[float], Script]:
    """The calls' start times (each answer takes 10 ms), and a script answering `script_answer`."""
    starts: list[float] = []

    def script(n: int, body: Any, headers: Mapping[str, str]) -> RawAnswer:
        starts.append(clock.now - 0.01)
        return script_answer(n)

    return starts, script


def test_the_input_token_bucket_paces_the_calls(tmp_path, run, clock):
    """1,800 input tokens a minute in a 1 s bucket: one 30-token call a second, no faster."""
    write_lines(tmp_path / "in.jsonl", 6)
    starts, script = starts_of(clock, lambda n: answer(200, message()))
    limits = BatchLimits(concurrency=6, input_tokens_per_minute=1_800, bucket_s=1)
    _, result = run(run_batch(tmp_path, FakeAPI(script), limits=limits))
    assert result.summary.succeeded == 6
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert min(gaps) >= 0.99
    assert starts[-1] <= 5 * 1.05 + 0.05


@pytest.mark.parametrize("output_tokens", [64, 8])
def test_output_is_settled_from_each_answers_usage(tmp_path, run, clock, output_tokens):
    """Under an output limit, short answers let calls in sooner: usage settles output tokens."""
    write_lines(tmp_path / "in.jsonl", 12)
    starts, script = starts_of(clock, lambda n: answer(200, message(output_tokens=output_tokens)))
    limits = BatchLimits(concurrency=12, output_tokens_per_minute=64 * 60, bucket_s=1)
    batch, result = run(run_batch(tmp_path, FakeAPI(script), limits=limits))
    assert result.summary.succeeded == 12
    assert batch.tally.tokens_out == 12 * output_tokens
    if output_tokens == 64:  # every answer takes a second of output: about a call a second
        assert starts[-1] >= 9.0
    else:  # eight times shorter: all within a couple of seconds
        assert starts[-1] < 3.0


def test_batch_limits_refuse_a_window_and_a_bucket_together():
    """A window and a bucket are two shapes of one API's limits: one of them, with the fix."""
    with pytest.raises(ConfigError, match="window_s or bucket_s, not both"):
        BatchLimits(window_s=1, bucket_s=1)
    with pytest.raises(ConfigError, match=r"BatchLimits\(bucket_s=0\)"):
        BatchLimits(bucket_s=0)
    with pytest.raises(ConfigError, match="output_tokens_per_minute"):
        BatchLimits(output_tokens_per_minute=-1)


# -- push-back and the spend cap -------------------------------------------------------------


def test_a_rate_limit_429_pauses_everyone_for_its_retry_after(tmp_path, run, clock):
    """Anthropic's 429 rate_limit_error with retry-after: nothing is sent until it passes."""
    write_lines(tmp_path / "in.jsonl", 3)

    def reply(n: int) -> RawAnswer:
        if n == 1:
            return error(429, "rate_limit_error", "over your ITPM", {"retry-after": "2"})
        return answer(200, message())

    starts, script = starts_of(clock, reply)
    batch, result = run(run_batch(tmp_path, FakeAPI(script), limits=BatchLimits(concurrency=1)))
    assert result.summary.succeeded == 3
    assert batch.tally.rate_limited == 1
    assert starts == pytest.approx([0.0, 2.01, 2.02, 2.03])


def test_a_529_is_retried(tmp_path, run):
    """529 overloaded_error is retried with backoff, and the line succeeds."""
    write_lines(tmp_path / "in.jsonl", 1)

    def script(n, body, headers):
        return error(529, "overloaded_error", "Overloaded") if n <= 2 else answer(200, message())

    api = FakeAPI(script)
    _, result = run(run_batch(tmp_path, api))
    assert (result.summary.succeeded, api.calls) == (1, 3)
    (record,) = read_results(tmp_path / "out.jsonl")
    assert record["attempts"] == 3


@pytest.mark.parametrize(
    "refusal",
    [
        error(
            429,
            "rate_limit_error",
            "This request would exceed your organization's monthly spend limit.",
        ),
        error(
            400,
            "invalid_request_error",
            "You have reached your specified workspace API usage limits. You will regain"
            " access on 2026-01-01 at 00:00 UTC.",
        ),
        error(
            400,
            "invalid_request_error",
            "Your credit balance is too low to access the Anthropic API. Please go to Plans &"
            " Billing to upgrade or purchase credits.",
        ),
    ],
    ids=["spend-cap-429", "workspace-usage-limit-400", "credit-balance-400"],
)
def test_a_spend_limit_stops_the_run_and_the_rest_stays_pending(tmp_path, run, refusal):
    """The spend cap, a workspace's usage limit, no credit: halt at once, fail nothing."""
    write_lines(tmp_path / "in.jsonl", 10)
    api = FakeAPI(lambda n, body, headers: answer(200, message()) if n <= 3 else refusal)
    batch, result = run(run_batch(tmp_path, api, limits=BatchLimits(concurrency=1)))
    assert api.calls == 4  # three answers, then the refusal: no retry, nothing after
    assert result.halted is not None
    assert "quota is exhausted" in result.halted
    assert [r["custom_id"] for r in read_results(tmp_path / "out.jsonl")] == ["c0", "c1", "c2"]
    assert (result.summary.failed, batch.tally.not_started + batch.tally.cancelled) == (0, 7)


def test_an_ordinary_bad_request_fails_its_line_only(tmp_path, run):
    """A 400 that is not about spending fails that line, and the run goes on."""
    write_lines(tmp_path / "in.jsonl", 3)

    def script(n, body, headers):
        if body["messages"][0]["content"].startswith("0001"):
            return error(400, "invalid_request_error", "messages.0.content: bad block")
        return answer(200, message())

    _, result = run(run_batch(tmp_path, FakeAPI(script)))
    assert (result.halted, result.summary.succeeded, result.summary.failed) == (None, 2, 1)
