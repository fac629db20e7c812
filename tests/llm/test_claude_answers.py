"""Answer checks that speak Claude: stop_reason, JSON in the text blocks, no hopeless check."""

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from conveyor import ConfigError, InvalidAnswer, Retry
from conveyor.cli.run_args import _REASONS, add_arguments, options_from_args
from conveyor.http import Batch, BatchFiles, BatchLimits, Endpoint, InputError, prepare
from conveyor.llm import AnswerCheck, LlmOptions
from conveyor.llm.validate import REASONS
from conveyor.policy.classify import classify

from ..http.fakes import FakeAPI
from ..http.helpers import read_results
from ..http.test_claude_run import answer, message, write_lines


class _Half:
    def random(self) -> float:
        return 0.5


def claude(text: str = '{"ok": true}', stop: str = "end_turn", **extra: Any) -> dict[str, Any]:
    return {**message(text, stop=stop), **extra}


def failure(check: AnswerCheck, body: Any) -> InvalidAnswer:
    with pytest.raises(InvalidAnswer) as caught:
        check(body)
    return caught.value


def test_claude_stop_reasons_are_checked_against_stop_reason():
    """end_turn passes; max_tokens is cut off, refusal refused, tool_use unexpected."""
    check = AnswerCheck(finish_reasons=frozenset({"end_turn"}))
    check(claude())
    reasons = [failure(check, claude(stop=s)).reason for s in ("max_tokens", "refusal", "tool_use")]
    assert reasons == ["length", "refusal", "finish_reason"]
    cut = failure(check, claude(stop="max_tokens"))
    assert str(cut) == (
        'the answer was cut off (stop_reason "max_tokens"): expected end_turn; raise max_tokens'
        " or shorten the prompt"
    )


def test_json_is_read_from_the_text_blocks_joined_never_no_choices():
    """--require-json on a Claude answer: its text blocks, joined, must parse; never no_choices."""
    check = AnswerCheck(json=True)
    split = claude()
    split["content"] = [
        {"type": "text", "text": '{"a": '},
        {"type": "tool_use", "id": "t", "name": "f", "input": {}},
        {"type": "text", "text": "1}"},
    ]
    check(split)
    not_json = failure(check, claude("Sure! Here it is: {"))
    assert (not_json.reason, str(not_json)[:25]) == ("not_json", "the answer's text is not ")
    only_tools = claude()
    only_tools["content"] = [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]
    assert str(failure(check, only_tools)) == "the answer has no text blocks"


def test_an_sdk_message_object_is_read_like_its_dict():
    """The anthropic SDK's Message (anything with model_dump) is checked as its dict."""

    class Message:
        def model_dump(self) -> dict[str, Any]:
            return claude(stop="max_tokens")

    assert (
        failure(AnswerCheck(finish_reasons=frozenset({"end_turn"})), Message()).reason == "length"
    )


def test_a_check_that_can_never_pass_on_an_answer_fails_it_without_retry():
    """finish_reason stop on a Claude answer: check_mismatch, which the policy does not retry."""
    mismatch = failure(AnswerCheck(finish_reasons=frozenset({"stop"})), claude())
    assert (mismatch.reason, mismatch.retryable) == ("check_mismatch", False)
    assert "end_turn" in str(mismatch)
    assert classify(mismatch).kind == "permanent"
    openai = {"choices": [{"finish_reason": "stop", "message": {"content": "{}"}}]}
    assert failure(AnswerCheck(finish_reasons=frozenset({"end_turn"})), openai).reason == (
        "check_mismatch"
    )


def test_a_check_naming_both_apis_reasons_serves_both():
    """{"stop", "end_turn"}: each answer is held to its own API's reasons."""
    check = AnswerCheck(finish_reasons=frozenset({"stop", "end_turn"}))
    check(claude())
    check({"choices": [{"finish_reason": "stop", "message": {"content": "x"}}]})
    assert check.problem(["chat", "messages", ""]) is None
    assert AnswerCheck(finish_reasons=frozenset({"end_turn"})).problem(["chat"]) is not None
    with pytest.raises(ConfigError, match="end_turn"):
        AnswerCheck(finish_reasons=frozenset({"finished"}))


def test_the_cli_takes_claudes_reasons():
    """--require-finish-reason end_turn builds the check; the choices are the check's reasons."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["in.jsonl", "-o", "out.jsonl", "--require-finish-reason", "end_turn"])
    options = options_from_args(args, {})
    assert options.llm is not None
    assert options.llm.validate == AnswerCheck(finish_reasons=frozenset({"end_turn"}))
    assert set(_REASONS) == REASONS


# -- in a run --------------------------------------------------------------------------------


def make_batch(tmp_path: Path, api: FakeAPI, check: AnswerCheck) -> Batch:
    files = BatchFiles(input=tmp_path / "in.jsonl", output=tmp_path / "out.jsonl")
    plan = prepare(files, Endpoint(base_url="https://api.anthropic.com"))
    try:
        return Batch(
            plan,
            limits=BatchLimits(concurrency=2),
            retry=Retry(attempts=3, rng=_Half()),
            transport=api,
            llm=LlmOptions(validate=check),
        )
    except BaseException:
        plan.close()
        raise


def test_require_json_on_claude_answers_costs_one_call_each(tmp_path, run):
    """JSON answers succeed at once; a non-JSON one fails as answer_not_json after retries."""
    write_lines(tmp_path / "in.jsonl", 4)

    def script(n, body, headers):
        prose = body["messages"][0]["content"].startswith("0003")
        return answer(200, claude("Here you go." if prose else '{"tag": "ok"}'))

    api = FakeAPI(script)
    batch = make_batch(
        tmp_path, api, AnswerCheck(finish_reasons=frozenset({"end_turn"}), json=True)
    )
    try:
        result = run(batch.run())
    finally:
        batch.plan.close()
    assert (result.summary.succeeded, result.summary.failed, api.calls) == (3, 1, 3 + 3)
    codes = {
        r["custom_id"]: (r["error"] or {}).get("code")
        for r in read_results(batch.plan.results.path)
    }
    assert codes == {"c0": None, "c1": None, "c2": None, "c3": "answer_not_json"}


def test_a_check_that_cannot_pass_on_the_files_lines_is_refused_before_sending(tmp_path):
    """--require-finish-reason stop on Messages lines: refused up front, naming end_turn."""
    write_lines(tmp_path / "in.jsonl", 3)
    api = FakeAPI()
    with pytest.raises(InputError) as refused:
        make_batch(tmp_path, api, AnswerCheck(finish_reasons=frozenset({"stop"})))
    text = str(refused.value)
    assert "can never pass" in text
    assert "messages from line 1" in text
    assert "e.g. end_turn" in text
    assert api.calls == 0


def test_a_mixed_file_needs_a_reason_of_each_api(tmp_path):
    """A file of chat and Messages lines: end_turn alone is refused (the chat lines), both pass."""
    claude_params = {
        "model": "claude-haiku-4-5",
        "max_tokens": 8,
        "messages": [{"role": "user", "content": "hi"}],
    }
    lines = [
        {"custom_id": "m", "params": claude_params},
        {"custom_id": "c", "url": "/v1/chat/completions", "body": {"messages": []}},
    ]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    with pytest.raises(InputError, match="chat from line 2"):
        make_batch(tmp_path, FakeAPI(), AnswerCheck(finish_reasons=frozenset({"end_turn"})))
    batch = make_batch(
        tmp_path, FakeAPI(), AnswerCheck(finish_reasons=frozenset({"end_turn", "stop"}))
    )
    batch.plan.close()
