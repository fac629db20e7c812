"""``conveyor run`` on Claude's Messages API: flags and views exactly, then against the mock.

The end-to-end tests run the command in this process against the mock API in a child process
(``conveyor.mockapi.run_in_process``), whose Messages route keeps Anthropic's token buckets,
529s and spend cap. Real time, on 127.0.0.1: each run is a few seconds at most. That the
limiter keeps within the buckets is tested exactly on virtual time (tests/http/
test_claude_run.py); here, on a shared machine, a 429 from real-time jitter is retried and
says nothing about the code, so these tests ask that every line be answered, not for no 429.
"""

import argparse
import io
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from conveyor.cli import main
from conveyor.cli.run_args import add_arguments, options_from_args
from conveyor.cli.run_view import progress_line, progress_view, start_line
from conveyor.http import BatchFiles, BatchLimits, Endpoint
from conveyor.http.tally import Progress
from conveyor.mockapi import AnthropicLimits, MockConfig, run_in_process

from ..http.helpers import read_results

KEY = "sk-ant-cli-7e57-0123456789abcdef"  # a made-up test value
MESSAGES = {
    "model": "claude-haiku-4-5",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "Summarise this ticket. " * 12}],
}


def args_of(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(["in.jsonl", "-o", "out.jsonl", *argv])


# -- flags and views -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "bucket_s", "window_s"),
    [
        (["--input-tpm", "50000", "--output-tpm", "10000", "--rpm", "300"], 1.0, None),
        (["--input-tpm", "50000", "--rpm", "50"], 1.2, None),  # a bucket holds one request
        (["--output-tpm", "10000", "--limit-bucket", "2s"], 2.0, None),
        (["--input-tpm", "50000", "--limit-window", "1s"], None, 1.0),
        (["--tpm", "90000", "--rpm", "500"], None, None),  # OpenAI's: paced unless told
    ],
)
def test_input_and_output_limits_default_to_token_buckets(argv, bucket_s, window_s):
    """--input-tpm/--output-tpm mean Anthropic: buckets of 1 s (one request's worth at least)."""
    limits = options_from_args(args_of(*argv), {}).limits
    assert (limits.bucket_s, limits.window_s) == (bucket_s, window_s)


def test_a_bucket_too_small_for_one_request_is_refused_with_the_fix():
    """--limit-bucket 0.5s at 50 rpm could start nothing: refused, saying what would do."""
    from conveyor import ConfigError

    with pytest.raises(ConfigError, match=r"give --limit-bucket 1\.2s or more"):
        options_from_args(args_of("--rpm", "50", "--limit-bucket", "0.5s", "--input-tpm", "9"), {})


def test_window_and_bucket_together_are_refused(capsys):
    """The two shapes exclude each other on the command line."""
    with pytest.raises(SystemExit):
        args_of("--limit-window", "1s", "--limit-bucket", "1s")
    assert "not allowed with argument" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["x-api-key", "X-Api-Key", "Authorization"])
def test_a_credential_in_a_plain_header_is_refused_with_the_fix(name):
    """--header x-api-key: ... would be in ps and unredacted: refused, naming --header-env."""
    from conveyor import ConfigError

    with pytest.raises(ConfigError, match=f"--header-env {name}=") as refused:
        options_from_args(args_of("--header", f"{name}: {KEY}"), {})
    assert KEY not in str(refused.value)


def test_the_api_key_comes_from_the_environment():
    """--header-env x-api-key=ANTHROPIC_API_KEY: a secret header, never in the repr."""
    options = options_from_args(
        args_of("--header-env", "x-api-key=ANTHROPIC_API_KEY"), {"ANTHROPIC_API_KEY": KEY}
    )
    assert options.endpoint.all_headers() == {"x-api-key": KEY}
    assert KEY not in repr(options)


def test_the_start_line_names_the_split_limits_and_their_shape():
    """Before sending: input and output limits, and the buckets they are kept in."""

    class FakePlan:
        files = BatchFiles(input=Path("claude.jsonl"), output=Path("out.jsonl"))
        to_run, already_done = 30, 0

    limits = BatchLimits(
        concurrency=10,
        requests_per_minute=50,
        input_tokens_per_minute=50_000,
        output_tokens_per_minute=10_000,
        bucket_s=1.2,
    )
    line = start_line(FakePlan(), limits, Endpoint(base_url="https://api.anthropic.com"))  # type: ignore[arg-type]
    assert line.endswith(
        "concurrency 10, 50 rpm, 50,000 input tpm, 10,000 output tpm (token buckets holding"
        " 1.2s of each)"
    )


PROGRESS = Progress(
    done=12,
    total=30,
    succeeded=12,
    failed=0,
    retrying=1,
    requests_per_minute=49.6,
    tokens_per_minute=31_000.0,
    rpm_limit=50,
    tpm_limit=None,
    rate_limited=0,
    elapsed_s=14.0,
    eta_s=21.0,
    input_tokens_per_minute=48_700.0,
    output_tokens_per_minute=9_100.0,
    itpm_limit=50_000,
    otpm_limit=10_000,
)


def test_progress_shows_input_and_output_against_their_limits_marking_the_estimate():
    """Input (~: estimated until answered) and output (the answers') rates against limits."""
    assert progress_line(PROGRESS) == (
        "12/30 (40%) done: 12 ok, 0 failed, 1 retrying; 50/50 rpm, ~31,000 tpm,"
        " in ~48,700/50,000 tpm, out 9,100/10,000 tpm (~ estimated when sent, until"
        " answered); 0 429s; 14s elapsed, ETA 21s"
    )
    console = Console(file=io.StringIO(), width=120, color_system=None)
    console.print(progress_view(PROGRESS))
    lines = console.file.getvalue().splitlines()  # type: ignore[attr-defined]
    assert lines[2] == (
        "in ~48,700/50,000 tpm, out 9,100/10,000 tpm  (~ estimated when sent, until answered)"
    )


def test_without_split_limits_the_progress_is_as_before():
    """No --input-tpm/--output-tpm: the line has no input/output part."""
    from dataclasses import replace

    line = progress_line(replace(PROGRESS, itpm_limit=None, otpm_limit=None))
    assert "in ~" not in line
    assert "out " not in line


# -- against the mock's Messages route -------------------------------------------------------


def write_claude_lines(path: Path, n: int, *, output_tokens: int = 40) -> list[str]:
    """`n` Messages lines, alternately in the Batch and Anthropic formats; return their ids."""
    ids = []
    with path.open("w") as f:
        for i in range(n):
            custom_id = f"t{i:02d}"
            ids.append(custom_id)
            body: dict[str, Any] = {
                **MESSAGES,
                "system": [{"type": "text", "text": f"You are support agent {i}. " * 4}],
            }
            headers = {"x-mock-output-tokens": str(output_tokens)}
            if i % 2:
                line = {"custom_id": custom_id, "params": body, "headers": headers}
            else:
                line = {
                    "custom_id": custom_id,
                    "method": "POST",
                    "url": "/v1/messages",
                    "body": body,
                    "headers": headers,
                }
            f.write(json.dumps(line) + "\n")
    return ids


def mock_stats(base_url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{base_url}/stats") as answer:  # noqa: S310 - our loopback URL
        stats: dict[str, Any] = json.load(answer)
    return stats


def run_cli(tmp_path: Path, base_url: str, *extra: str) -> int:
    argv = ["run", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "out.jsonl")]
    return main([*argv, "--base-url", base_url, *extra])


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("CONVEYOR_TEST_ANTHROPIC_KEY", KEY)
    return KEY


def test_thirty_claude_lines_within_separate_input_and_output_buckets(
    tmp_path: Path, capsys, caplog, key
):
    """Both line formats, ITPM and OTPM buckets: every line answered, with its usage; no key."""
    ids = write_claude_lines(tmp_path / "in.jsonl", 30)
    limits = AnthropicLimits(rpm=1_200, itpm=60_000, otpm=30_000, burst_s=1.0)
    summary = tmp_path / "summary.json"
    with run_in_process(MockConfig(latency_ms=20, anthropic=limits, seed=1)) as base_url:
        code = run_cli(
            tmp_path,
            base_url,
            "--header-env",
            "x-api-key=CONVEYOR_TEST_ANTHROPIC_KEY",
            "--rpm",
            "1200",
            "--input-tpm",
            "60000",
            "--output-tpm",
            "30000",
            "--concurrency",
            "10",
            "--require-finish-reason",
            "end_turn",
            "--summary-json",
            str(summary),
            "--progress",
            "plain",
            "--progress-interval",
            "500ms",
        )
        stats = mock_stats(base_url)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    results = read_results(tmp_path / "out.jsonl")
    assert sorted(r["custom_id"] for r in results) == ids
    for record in results:
        assert record["error"] is None
        usage = record["response"]["body"]["usage"]
        assert usage["output_tokens"] == 40
        assert usage["input_tokens"] > 0
    record = json.loads(summary.read_text())
    assert (record["succeeded"], record["failed"]) == (30, 0)
    assert record["rate_limited"] == stats["messages_rate_limited"]
    assert record["tokens_out"] == 30 * 40
    assert record["tokens_in"] == stats["messages_input_tokens"]  # what the mock counted
    assert record["cost_usd"] > 0  # claude-haiku-4-5 is priced
    assert "60,000 input tpm, 30,000 output tpm (token buckets holding 1s of each)" in captured.out
    assert "in ~" in captured.out  # the plain progress lines show the split rates
    for text in (captured.out, captured.err, (tmp_path / "out.jsonl").read_text(), caplog.text):
        assert key not in text


def test_the_spend_cap_stops_the_run_exit_3_and_the_rest_stays_pending(tmp_path: Path, capsys):
    """The mock's spend cap (429, no retry-after): exit 3, no failed line, nothing retried."""
    ids = write_claude_lines(tmp_path / "in.jsonl", 30)
    limits = AnthropicLimits(spend_cap_tokens=1_500)
    summary = tmp_path / "summary.json"
    with run_in_process(MockConfig(latency_ms=5, anthropic=limits)) as base_url:
        code = run_cli(
            tmp_path,
            base_url,
            "--concurrency",
            "4",
            "--summary-json",
            str(summary),
            "--progress",
            "none",
        )
        first = mock_stats(base_url)
        again = run_cli(tmp_path, base_url, "--concurrency", "4", "--progress", "none")
        second = mock_stats(base_url)
    out = capsys.readouterr().out
    assert (code, again) == (3, 3)
    results = read_results(tmp_path / "out.jsonl")
    assert all(r["error"] is None for r in results)  # the capped ones are not failures
    answered = len(results)
    assert 0 < answered < 30
    assert first["messages_spend_limited"] <= 4  # at most the calls in flight, never retried
    record = json.loads(summary.read_text())
    assert record["failed"] == 0
    assert record["not_started"] + record["cancelled"] == 30 - answered
    assert "quota is exhausted" in record["halted"]
    assert "Stopped:" in out
    # A resume meets the cap at once and stops again: nothing failed, the rest still pending.
    assert 0 < second["messages_spend_limited"] - first["messages_spend_limited"] <= 4
    assert read_results(tmp_path / "out.jsonl") == results
    assert set(ids) > {r["custom_id"] for r in results}


def test_529s_are_retried_until_every_line_succeeds(tmp_path: Path, capsys):
    """A third of the calls answered 529 overloaded: retried, all 30 lines succeed."""
    write_claude_lines(tmp_path / "in.jsonl", 30)
    limits = AnthropicLimits(overloaded_rate=0.3)
    with run_in_process(MockConfig(latency_ms=5, anthropic=limits, seed=5)) as base_url:
        code = run_cli(tmp_path, base_url, "--retries", "10", "--progress", "none")
        stats = mock_stats(base_url)
    assert code == 0, capsys.readouterr().err
    results = read_results(tmp_path / "out.jsonl")
    assert len(results) == 30
    assert all(r["error"] is None for r in results)
    assert stats["overloaded"] > 0
    assert sum(r["attempts"] - 1 for r in results) == stats["overloaded"]


@pytest.fixture(scope="module")
def plain_mock() -> Iterator[str]:
    """The mock API with no Messages limits, answering at once."""
    with run_in_process(MockConfig(latency_ms=0)) as base_url:
        yield base_url


def test_a_finish_reason_of_the_other_api_is_refused_before_sending(
    tmp_path: Path, plain_mock: str, capsys
):
    """--require-finish-reason stop on Messages lines: exit 2, nothing sent, end_turn named."""
    write_claude_lines(tmp_path / "in.jsonl", 3)
    before = mock_stats(plain_mock)["requests"]
    code = run_cli(tmp_path, plain_mock, "--require-finish-reason", "stop", "--progress", "none")
    err = capsys.readouterr().err
    assert code == 2
    assert "can never pass" in err
    assert "e.g. end_turn" in err
    assert mock_stats(plain_mock)["requests"] == before
    assert not read_results(tmp_path / "out.jsonl")


def test_a_bad_messages_line_fails_alone(tmp_path: Path, plain_mock: str, capsys):
    """A line without max_tokens is an invalid_line naming the fix; the others are answered."""
    write_claude_lines(tmp_path / "in.jsonl", 2)
    bad = {k: v for k, v in MESSAGES.items() if k != "max_tokens"}
    with (tmp_path / "in.jsonl").open("a") as f:
        f.write(json.dumps({"custom_id": "bad", "params": bad}) + "\n")
    assert run_cli(tmp_path, plain_mock, "--progress", "none") == 1
    by_id = {r["custom_id"]: r for r in read_results(tmp_path / "out.jsonl")}
    assert by_id["t00"]["error"] is None
    assert by_id["t01"]["error"] is None
    assert by_id["bad"]["error"]["code"] == "invalid_line"
    assert '"max_tokens", which Claude requires' in by_id["bad"]["error"]["message"]
    assert "Traceback" not in capsys.readouterr().err
