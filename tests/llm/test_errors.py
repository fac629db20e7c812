"""Errors an LLM user meets: exhausted quota, x-should-retry, answer checks; pure and in a run."""

import asyncio
import json
from pathlib import Path

import pytest

import conveyor
from conveyor import ConfigError, InvalidAnswer, Limiter, QuotaExhausted, Retry, is_transient
from conveyor.http import (
    Batch,
    BatchFiles,
    BatchLimits,
    Endpoint,
    HTTPStatusError,
    RawAnswer,
    Response,
    prepare,
)
from conveyor.llm import AnswerCheck, LlmOptions
from conveyor.policy.llm_errors import api_error_fields, quota_exhausted, should_retry_hint

from ..http.fakes import FakeAPI, ok
from ..http.helpers import read_results, write_requests

QUOTA_BODY = {
    "error": {
        "message": "You exceeded your current quota, please check your plan and billing details.",
        "type": "insufficient_quota",
        "param": None,
        "code": "insufficient_quota",
    }
}


def http_error(code: int, body: object, headers: dict[str, str] | None = None) -> HTTPStatusError:
    return HTTPStatusError(Response(code, {}, body), headers or {})


def quota_answer() -> RawAnswer:
    return RawAnswer(429, {"content-type": "application/json"}, json.dumps(QUOTA_BODY).encode())


def chat_answer(content: str, finish_reason: str = "stop") -> RawAnswer:
    body = {
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"content": content}, "finish_reason": finish_reason}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }
    return RawAnswer(200, {"content-type": "application/json"}, json.dumps(body).encode())


class _Half:
    def random(self) -> float:
        return 0.5


def test_a_quota_429_is_not_transient_but_a_rate_limit_429_is():
    """insufficient_quota in a 429's body makes it permanent; a plain 429 stays retryable."""
    assert quota_exhausted(http_error(429, QUOTA_BODY))
    assert not is_transient(http_error(429, QUOTA_BODY))
    assert is_transient(http_error(429, {"error": {"code": "rate_limit_exceeded"}}))
    assert not quota_exhausted(http_error(500, QUOTA_BODY))  # only a 429 says it


def test_the_openai_sdk_error_shape_is_read_too():
    """The SDK keeps the inner error object in .body and the status in .status_code."""

    class RateLimitError(Exception):
        status_code = 429
        body = QUOTA_BODY["error"]

    assert api_error_fields(RateLimitError())[0] == "insufficient_quota"
    assert not is_transient(RateLimitError())


@pytest.mark.parametrize(
    ("status", "header", "retried"),
    [(500, "false", False), (400, "true", True), (429, "TRUE", True), (503, None, True)],
)
def test_x_should_retry_decides_over_the_status(status, header, retried):
    """x-should-retry: true|false wins over the status; without it the status decides."""
    headers = {} if header is None else {"x-should-retry": header}
    error = http_error(status, {}, headers)
    assert should_retry_hint(error) == (None if header is None else header.lower() == "true")
    assert is_transient(error) is retried


def test_a_halted_limiter_refuses_every_caller_at_once(clock):
    """After a quota error, queued and later admissions raise QuotaExhausted without waiting."""
    limiter = Limiter("openai", requests_per_second=1, window_s=1.0)

    async def scenario() -> list[str]:
        first = await limiter.admit()
        waiting = asyncio.ensure_future(limiter.admit())
        await asyncio.sleep(0)
        first.release(http_error(429, QUOTA_BODY))
        outcomes = []
        for attempt in (waiting, limiter.admit()):
            try:
                await attempt
            except QuotaExhausted as exc:
                outcomes.append(str(exc))
        return outcomes

    messages = clock.run(scenario())
    assert len(messages) == 2
    assert "quota is exhausted" in messages[0]
    assert "not a rate limit" in messages[0]
    assert clock.now == 0.0  # nobody waited for the window


async def _run(tmp_path: Path, api: FakeAPI, *, llm: LlmOptions | None = None, concurrency=1):
    files = BatchFiles(input=tmp_path / "in.jsonl", output=tmp_path / "out.jsonl")
    plan = prepare(files, Endpoint(base_url="http://api.test"))
    batch = Batch(
        plan,
        limits=BatchLimits(concurrency=concurrency),
        retry=Retry(attempts=6, rng=_Half()),
        transport=api,
        llm=llm,
    )
    try:
        return batch, await batch.run()
    finally:
        plan.close()


def test_a_run_stops_at_the_first_quota_error_and_leaves_the_rest_pending(tmp_path, run):
    """The run stops admitting at once, retries nothing, and writes nothing it did not finish."""
    write_requests(tmp_path / "in.jsonl", 10)
    api = FakeAPI(lambda n, body, headers: ok() if n <= 3 else quota_answer())
    batch, result = run(_run(tmp_path, api))
    assert api.calls == 4  # three answers, then one quota error: no retry, nothing after
    assert result.halted is not None
    assert "quota is exhausted" in result.halted
    assert [r["custom_id"] for r in read_results(tmp_path / "out.jsonl")] == [
        "req-0",
        "req-1",
        "req-2",
    ]
    assert (result.summary.failed, batch.tally.not_started + batch.tally.cancelled) == (0, 7)
    assert batch.limiter.halted is not None


def test_answer_check_names_each_reason():
    """Cut off, filtered and non-JSON answers each fail with their own reason."""
    check = AnswerCheck(finish_reasons=frozenset({"stop"}), json=True)

    def body(content: str, reason: str) -> dict[str, object]:
        return {"choices": [{"finish_reason": reason, "message": {"content": content}}]}

    check(body('{"a": 1}', "stop"))
    reasons = []
    for content, reason in (('{"a"', "length"), ("{}", "content_filter"), ("no", "stop")):
        with pytest.raises(InvalidAnswer) as caught:
            check(body(content, reason))
        reasons.append(caught.value.reason)
    assert reasons == ["length", "content_filter", "not_json"]
    with pytest.raises(ConfigError, match="finish_reasons"):
        AnswerCheck(finish_reasons=frozenset({"done"}))


def test_a_cut_off_answer_is_retried_and_a_persistent_one_fails_with_its_reason(tmp_path, run):
    """finish_reason length is a retryable failure; the result says answer_length."""
    write_requests(tmp_path / "in.jsonl", 2)

    def script(n, body, headers):
        if body["messages"][0]["content"] == "hello 0":
            return chat_answer("{}", "stop" if n >= 2 else "length")  # cut off once, then fine
        return chat_answer("{}", "length")  # always cut off

    api = FakeAPI(script)
    llm = LlmOptions(validate=AnswerCheck(finish_reasons=frozenset({"stop"})))
    batch, result = run(_run(tmp_path, api, llm=llm))
    by_id = {r["custom_id"]: r for r in read_results(tmp_path / "out.jsonl")}
    assert by_id["req-0"]["error"] is None
    assert by_id["req-0"]["attempts"] == 2
    assert by_id["req-1"]["error"]["code"] == "answer_length"
    assert by_id["req-1"]["attempts"] == 6
    assert by_id["req-1"]["response"]["body"]["choices"][0]["finish_reason"] == "length"
    # Every answer's tokens were counted, the failed ones' too: they were spent.
    assert batch.tally.tokens_in == 10 * api.calls
    assert result.summary.failed == 1


def test_a_non_json_answer_fails_as_not_json(tmp_path, run):
    """--require-json: content that does not parse is answer_not_json."""
    write_requests(tmp_path / "in.jsonl", 1)
    api = FakeAPI(lambda n, body, headers: chat_answer("Sure! Here is the JSON: {"))
    run(_run(tmp_path, api, llm=LlmOptions(validate=AnswerCheck(json=True))))
    (record,) = read_results(tmp_path / "out.jsonl")
    assert record["error"]["code"] == "answer_not_json"


def test_cli_flags_build_the_answer_check(tmp_path):
    """--require-finish-reason and --require-json reach the run as one AnswerCheck."""
    import argparse

    from conveyor.cli.run_args import add_arguments, options_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        ["in.jsonl", "-o", "out.jsonl", "--require-finish-reason", "stop", "--require-json"]
    )
    options = options_from_args(args, {})
    assert options.llm is not None
    assert options.llm.validate == AnswerCheck(finish_reasons=frozenset({"stop"}), json=True)


def test_public_names_are_reachable():
    """The new errors are on the package, under the one root."""
    assert issubclass(conveyor.QuotaExhausted, conveyor.ConveyorError)
    assert issubclass(conveyor.InvalidAnswer, conveyor.ConveyorError)


@pytest.mark.parametrize("content", ["[" * 100_000, '{"a": NaN}'])
def test_answer_check_calls_deep_or_nan_content_not_json(content):
    """--require-json on content 100,000 deep or with NaN: answer_not_json, never a crash."""
    check = AnswerCheck(json=True)
    body = {"choices": [{"finish_reason": "stop", "message": {"content": content}}]}
    with pytest.raises(InvalidAnswer) as caught:
        check(body)
    assert caught.value.reason == "not_json"
    assert str(caught.value).startswith("the answer's content ")
