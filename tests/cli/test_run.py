"""``conveyor run`` and ``conveyor mock-api``: pure renderers exactly, then the command for real.

The in-process tests call ``main([...])`` against the mock API in a child process (it needs
its own loop, since the command runs one). The interruption tests run the command itself as a
child process against the mock API in the test's loop, and wait for lines it prints, never for
time to pass.
"""

import asyncio
import io
import json
import os
import re
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from conveyor import Summary
from conveyor.cli import main
from conveyor.cli.run_view import (
    batch_summary_table,
    format_duration,
    progress_line,
    progress_view,
    start_line,
    summary_record,
)
from conveyor.http import BatchFiles, BatchLimits, BatchResult, BatchTally, Endpoint
from conveyor.http.tally import Progress
from conveyor.mockapi import MockAPI, MockConfig, run_in_process

from ..http.helpers import id_counts, read_results, request_line, write_requests

SECRET = "Bearer sk-cli-7e57-0123456789abcdef"  # noqa: S105 - a made-up test value

PROGRESS = Progress(
    done=1_234,
    total=20_000,
    succeeded=1_200,
    failed=34,
    retrying=5,
    requests_per_minute=498.4,
    tokens_per_minute=98_000.0,
    rpm_limit=500,
    tpm_limit=200_000,
    rate_limited=3,
    elapsed_s=12.3,
    eta_s=225.0,
)

SUMMARY = Summary(
    total=12,
    succeeded=10,
    failed=2,
    cancelled=0,
    retries=3,
    duration_s=2.0,
    latency_mean_s=0.05,
    latency_p50_s=0.04,
    latency_p95_s=0.09,
    latency_p99_s=0.1,
    latency_max_s=0.25,
    throughput_per_s=6.0,
    max_concurrency=4,
    concurrency=5,
)


def render(renderable: object, width: int = 100) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None)
    console.print(renderable)
    return console.file.getvalue()  # type: ignore[attr-defined,no-any-return]


# -- pure formatting -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.4, "0s"), (59.4, "59s"), (60, "1m00s"), (185, "3m05s"), (3600, "1h00m"), (7620, "2h07m")],
)
def test_durations_are_short(seconds, text):
    """Durations read as seconds, then minutes and seconds, then hours and minutes."""
    assert format_duration(seconds) == text


def test_the_plain_progress_line():
    """The plain line says counts, rates against the limits, 429s, elapsed time and ETA."""
    assert progress_line(PROGRESS) == (
        "1,234/20,000 (6%) done: 1,200 ok, 34 failed, 5 retrying; 498/500 rpm,"
        " ~98,000/200,000 tpm (~ estimated when sent, until answered); 3 429s; 12s elapsed,"
        " ETA 3m45s"
    )


def test_the_plain_progress_line_without_limits_or_eta():
    """Without limits the rates stand alone; without a rate yet the ETA is '?'."""
    progress = Progress(
        done=0,
        total=None,
        succeeded=0,
        failed=0,
        retrying=0,
        requests_per_minute=0.0,
        tokens_per_minute=0.0,
        rpm_limit=None,
        tpm_limit=None,
        rate_limited=0,
        elapsed_s=0.0,
        eta_s=None,
    )
    assert progress_line(progress) == (
        "0 done: 0 ok, 0 failed, 0 retrying; 0 rpm, ~0 tpm (~ estimated when sent, until"
        " answered); 0 429s; 0s elapsed, ETA ?"
    )


def test_the_live_view_shows_bar_counts_rates_and_eta():
    """The terminal view is a bar with counts and ETA, then outcomes, rates and 429s."""
    lines = render(progress_view(PROGRESS)).splitlines()
    assert lines[0].endswith("1,234/20,000 (6%) ETA 3m45s")
    assert lines[1] == (
        "1,200 ok  34 failed  5 retrying  498/500 rpm  ~98,000/200,000 tpm  3 429s  12s"
    )
    assert lines[2] == "(~ estimated when sent, until answered)"


def test_the_start_line_says_what_goes_where_within_which_limits(tmp_path: Path):
    """Before sending: how many requests, from where to where, and the limits in force."""

    class FakePlan:
        files = BatchFiles(input=Path("req.jsonl"), output=Path("out.jsonl"))
        to_run, already_done = 1_500, 500

    limits = BatchLimits(concurrency=20, requests_per_minute=500, tokens_per_minute=2e5, window_s=1)
    line = start_line(FakePlan(), limits, Endpoint(base_url="https://api.example.com"))  # type: ignore[arg-type]
    assert line == (
        "conveyor run: 1,500 request(s) to send from req.jsonl to https://api.example.com;"
        " 500 already in out.jsonl; concurrency 20, 500 rpm, 200,000 tpm (enforced over 1s"
        " windows)"
    )
    unlimited = start_line(FakePlan(), BatchLimits(), Endpoint())  # type: ignore[arg-type]
    assert unlimited.endswith(
        "to the urls in the file; 500 already in out.jsonl; concurrency 50, no rate limits set"
    )


def test_the_summary_table_adds_the_batch_rows():
    """The run's summary reuses the engine's table and adds 429s, invalid lines and skips."""
    tally = BatchTally(total=12, rate_limited=7, invalid=1, skipped=30)
    result = BatchResult(summary=SUMMARY, tally=tally, interrupted=True)
    text = render(batch_summary_table(result))
    rows = [" ".join(line.strip("│┌┐└┘├┤─ ").split()) for line in text.splitlines()]
    assert "conveyor run (interrupted)" in text
    assert "items │ 12" in rows
    assert "429 answers │ 7" in rows
    assert "invalid lines │ 1" in rows
    assert "skipped (already in results) │ 30" in rows


def test_the_summary_record_is_the_summary_plus_the_batch_figures():
    """--summary-json holds the summary's figures, 429s, counts, spend and both paths only."""
    tally = BatchTally(total=12, rate_limited=7, invalid=1, skipped=30)
    result = BatchResult(summary=SUMMARY, tally=tally, interrupted=False)
    record = summary_record(result, input_path=Path("in.jsonl"), output=Path("out.jsonl"))
    assert record == {
        **SUMMARY.to_dict(),
        "rate_limited": 7,
        "invalid_lines": 1,
        "skipped": 30,
        "interrupted": False,
        "halted": None,
        "not_started": 0,
        "tokens_in": 0,
        "tokens_out": 0,
        "cost_usd": 0.0,
        "unpriced_answers": 0,
        "cache_hits": 0,
        "input": "in.jsonl",
        "output": "out.jsonl",
    }


# -- options -----------------------------------------------------------------------------------


def test_help_describes_the_format_resume_and_exit_status(capsys):
    """`conveyor run --help` explains the line format, resuming, secrets and exit codes."""
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    for text in ("custom_id, method", "Run the same command again", "--header-env", "130"):
        assert text in out


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--limit-window", "fast", "'fast' is not a duration: write it like 30s, 500ms, 2m or"),
        ("--limit-window", "0s", "'0s': the duration must be more than 0"),
        ("--timeout", "later", "'later' is not a duration"),
        ("--rpm", "-5", "'-5' must be a number > 0"),
        ("--concurrency", "0", "0 must be at least 1"),
        ("--retries", "-1", "-1 must be at least 0"),
        ("--attempts", "0", "0 must be at least 1"),
        ("--header", "NoColon", "'NoColon' is not a header: write it as 'Name: value'"),
        ("--header-env", "Authorization", "write it as Header-Name=ENV_VAR"),
    ],
)
def test_bad_options_are_refused_with_the_fix(tmp_path: Path, capsys, option, value, message):
    """Each malformed option is refused by the parser, saying how to write it."""
    with pytest.raises(SystemExit) as exited:
        main(["run", "in.jsonl", "-o", "out.jsonl", option, value])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_an_unset_header_env_variable_is_refused(tmp_path: Path, capsys, monkeypatch):
    """--header-env naming an unset variable is refused before anything, saying which."""
    write_requests(tmp_path / "in.jsonl", 1)
    monkeypatch.delenv("CONVEYOR_TEST_AUTH", raising=False)
    argv = ["run", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "out.jsonl")]
    code = main([*argv, "--header-env", "Authorization=CONVEYOR_TEST_AUTH"])
    err = capsys.readouterr().err
    assert code == 2
    assert "the environment variable CONVEYOR_TEST_AUTH is not set" in err
    assert not (tmp_path / "out.jsonl").exists()


# -- the command against the mock API ------------------------------------------------------


@pytest.fixture(scope="module")
def mock_url() -> Iterator[str]:
    """The mock API in a child process, answering at once, shared by this module's tests."""
    with run_in_process(MockConfig(latency_ms=0)) as base_url:
        yield base_url


def requests_seen(base_url: str) -> int:
    """The mock's count of requests received so far."""
    import urllib.request

    with urllib.request.urlopen(f"{base_url}/stats") as answer:  # noqa: S310 - our loopback URL
        return int(json.load(answer)["requests"])


def run_cli(tmp_path: Path, base_url: str | None, *extra: str) -> int:
    argv = ["run", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "out.jsonl")]
    if base_url is not None:
        argv += ["--base-url", base_url]
    return main([*argv, "--progress", "none", *extra])


def test_a_run_writes_every_result_and_the_summary(tmp_path: Path, mock_url: str, capsys):
    """A run sends every line, exits 0, prints the table and writes the summary JSON."""
    ids = write_requests(tmp_path / "in.jsonl", 25)
    summary = tmp_path / "summary.json"
    assert run_cli(tmp_path, mock_url, "--summary-json", str(summary)) == 0
    out = capsys.readouterr().out
    assert "conveyor run: 25 request(s) to send from" in out
    assert "429 answers" in out
    assert id_counts(tmp_path / "out.jsonl") == dict.fromkeys(ids, 1)
    record = json.loads(summary.read_text())
    assert (record["total"], record["succeeded"], record["rate_limited"]) == (25, 25, 0)
    assert record["output"] == str(tmp_path / "out.jsonl")


def test_an_empty_input_exits_0_with_an_empty_summary(tmp_path: Path, mock_url: str, capsys):
    """An empty requests file: a clear message, exit 0, a summary of zeros."""
    (tmp_path / "in.jsonl").write_text("")
    summary = tmp_path / "summary.json"
    assert run_cli(tmp_path, mock_url, "--summary-json", str(summary)) == 0
    assert "in.jsonl holds no requests: nothing to send" in capsys.readouterr().out
    record = json.loads(summary.read_text())
    assert (record["total"], record["succeeded"], record["failed"]) == (0, 0, 0)


def test_hostile_lines_fail_alone_and_the_others_run(tmp_path: Path, mock_url: str, capsys):
    """Deep nesting, a lone surrogate, NaN: each line its own invalid_line; the rest succeed."""
    good = request_line("a")
    lone = good.replace('"a"', '"b"').replace('"content": "', '"content": "\\ud800', 1)
    lines = [
        good.encode(),
        b"[" * 100_000,
        lone.encode(),
        request_line("c", cost=1).replace('"cost": 1', '"cost": NaN').encode(),
        request_line("d").encode(),
    ]
    (tmp_path / "in.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    assert run_cli(tmp_path, mock_url) == 1
    results = {r["custom_id"]: r for r in read_results(tmp_path / "out.jsonl")}
    assert results["a"]["error"] is None
    assert results["d"]["error"] is None
    messages = {k: r["error"]["message"] for k, r in results.items() if r["error"] is not None}
    assert all(results[k]["error"]["code"] == "invalid_line" for k in messages)
    assert messages["line-2"] == (
        "line 2 nests arrays and objects more than 128 deep, the most accepted: flatten it"
    )
    column = lone.index("\\ud800") + 1
    assert messages["line-3"].startswith(
        f"line 3 is not valid JSON: a lone surrogate \\ud800 at column {column} is not valid"
        " Unicode; "
    )
    assert "NaN at column" in messages["line-4"]
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("setup", "base", "message"),
    [
        ("duplicates", True, "has 1 duplicate custom_id(s): 'a' on lines 1, 3"),
        ("unwritable", True, "out.jsonl is a directory: give a file name"),
        ("relative", False, "line 1: the url '/v1/chat/completions' is relative and no --base-url"),
        ("summary", True, "cannot write --summary-json"),
        ("summary over output", True, "--summary-json names the results file (-o)"),
        ("summary over input", True, "--summary-json names the requests file"),
    ],
)
def test_refusals_send_nothing(tmp_path: Path, mock_url: str, capsys, setup, base, message):
    """Duplicate ids, bad output or summary paths, a relative url without base: exit 2, no send."""
    write_requests(tmp_path / "in.jsonl", 3)
    extra: list[str] = []
    if setup == "duplicates":
        lines = [request_line("a"), request_line("b"), request_line("a")]
        (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")
    elif setup == "unwritable":
        (tmp_path / "out.jsonl").mkdir()
    elif setup == "summary":
        extra = ["--summary-json", str(tmp_path / "missing" / "s.json")]
    elif setup == "summary over output":
        extra = ["--summary-json", str(tmp_path / "." / "out.jsonl")]
    elif setup == "summary over input":
        extra = ["--summary-json", str(tmp_path / "in.jsonl")]
    requests = (tmp_path / "in.jsonl").read_bytes()
    before = requests_seen(mock_url)
    assert run_cli(tmp_path, mock_url if base else None, *extra) == 2
    assert message in capsys.readouterr().err
    assert requests_seen(mock_url) == before
    assert (tmp_path / "in.jsonl").read_bytes() == requests


def test_resume_after_a_partial_output_with_a_torn_line(tmp_path: Path, mock_url: str, capsys):
    """A second run completes a partial output (torn last line cut): each id exactly once."""
    ids = write_requests(tmp_path / "in.jsonl", 20)
    assert run_cli(tmp_path, mock_url) == 0
    done = (tmp_path / "out.jsonl").read_text().splitlines(keepends=True)
    # As if killed: 8 results written, the 9th cut mid-line.
    (tmp_path / "out.jsonl").write_text("".join(done[:8]) + done[8][:25])
    before = requests_seen(mock_url)
    assert run_cli(tmp_path, mock_url) == 0
    captured = capsys.readouterr()
    assert "was cut short by an interruption; it was removed" in captured.err
    assert "12 request(s) to send" in captured.out
    assert requests_seen(mock_url) - before == 12
    assert id_counts(tmp_path / "out.jsonl") == dict.fromkeys(ids, 1)
    assert run_cli(tmp_path, mock_url) == 0  # and once more: nothing left to send
    assert "all 20 requests already have results" in capsys.readouterr().out


def test_retry_failed_runs_failures_again_and_keeps_each_id_once(
    tmp_path: Path, mock_url: str, capsys
):
    """Failed results (nothing listening) re-run with --retry-failed; each id ends exactly once."""
    ids = write_requests(tmp_path / "in.jsonl", 10)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    assert run_cli(tmp_path, dead, "--retries", "0") == 1
    assert "--retry-failed to send them again" in capsys.readouterr().out
    assert all(r["error"] for r in read_results(tmp_path / "out.jsonl"))
    assert run_cli(tmp_path, mock_url) == 1  # a plain resume keeps the failures
    assert run_cli(tmp_path, mock_url, "--retry-failed") == 0
    assert id_counts(tmp_path / "out.jsonl") == dict.fromkeys(ids, 1)
    assert all(r["error"] is None for r in read_results(tmp_path / "out.jsonl"))


def test_a_secret_never_appears_in_any_output(
    tmp_path: Path, mock_url: str, capsys, monkeypatch, caplog
):
    """The --header-env value is in no result, summary, printed line, log or message."""
    monkeypatch.setenv("CONVEYOR_TEST_AUTH", SECRET)
    lines = [
        request_line("ok"),
        request_line("bad", body={"model": "m"}),  # the mock answers 400
        json.dumps({"custom_id": "echo", "url": "/v1/echo", "body": {"leak": SECRET}}),
        "{broken",
    ]
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")
    summary = tmp_path / "summary.json"
    code = run_cli(
        tmp_path,
        mock_url,
        "--header-env",
        "Authorization=CONVEYOR_TEST_AUTH",
        "--summary-json",
        str(summary),
        "--progress",
        "plain",
    )
    captured = capsys.readouterr()
    assert code == 1
    token = SECRET.split()[1]
    everything = [captured.out, captured.err, (tmp_path / "out.jsonl").read_text()]
    everything += [summary.read_text(), caplog.text]
    for text in everything:
        assert token not in text
    echoed = {r["custom_id"]: r for r in read_results(tmp_path / "out.jsonl")}["echo"]
    assert echoed["response"]["body"] == {"leak": "[redacted]"}


# -- interruptions, for real -----------------------------------------------------------------


def conveyor_run(tmp_path: Path, base_url: str, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "conveyor",
        "run",
        str(tmp_path / "in.jsonl"),
        "-o",
        str(tmp_path / "out.jsonl"),
        "--base-url",
        base_url,
        *extra,
    ]


async def run_until(argv: list[str], done_at_least: int, sig: signal.Signals) -> tuple[int, str]:
    """Start the command, wait for a progress line showing `done_at_least` results, signal it.

    Returns its exit status and what it printed.
    """
    child = await asyncio.create_subprocess_exec(
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert child.stdout is not None
    printed: list[str] = []
    try:
        async with asyncio.timeout(30):
            while True:
                line = (await child.stdout.readline()).decode()
                assert line, f"the run ended before reaching {done_at_least}: {printed}"
                printed.append(line)
                if " done: " in line and int(line.split("/")[0].replace(",", "")) >= done_at_least:
                    break
            child.send_signal(sig)
            rest = await child.stdout.read()
            code = await child.wait()
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    return code, "".join(printed) + rest.decode()


def assert_valid_partial(path: Path) -> set[str]:
    """Every complete line is a result, each id at most once; a torn last line is allowed."""
    data = path.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    ids = [json.loads(line)["custom_id"] for line in complete.splitlines()]
    assert len(ids) == len(set(ids))
    return set(ids)


def interrupted_then_resumed(
    tmp_path: Path, sig: signal.Signals
) -> tuple[int, str, dict[str, Any]]:
    ids = write_requests(tmp_path / "in.jsonl", 300)
    summary = tmp_path / "summary.json"

    async def main() -> tuple[int, str, int]:
        # 50 ms per answer, 10 at a time: a run lasts 1.5 s, so the signal lands mid-run.
        async with MockAPI(MockConfig(latency_ms=50)) as api:
            plain = ["--progress", "plain", "--progress-interval", "50ms", "--concurrency", "10"]
            argv = conveyor_run(tmp_path, api.base_url, *plain, "--summary-json", str(summary))
            code, printed = await run_until(argv, 20, sig)
            written = assert_valid_partial(tmp_path / "out.jsonl")
            assert 20 <= len(written) < 300
            # Resume: the same command, faster.
            again = conveyor_run(
                tmp_path, api.base_url, "--progress", "none", "--concurrency", "100"
            )
            resumed = await asyncio.create_subprocess_exec(*again)
            return code, printed, await resumed.wait()

    code, printed, resumed_code = asyncio.run(main())
    assert resumed_code == 0
    assert id_counts(tmp_path / "out.jsonl") == dict.fromkeys(ids, 1)
    record = json.loads(summary.read_text()) if summary.exists() else {}
    return code, printed, record


def test_ctrl_c_stops_cleanly_and_a_resume_completes_exactly_once(tmp_path: Path):
    """SIGINT: in-flight requests cancelled (not written), summary shown, exit 130; resumable."""
    code, printed, record = interrupted_then_resumed(tmp_path, signal.SIGINT)
    assert code == 130
    assert re.search(r"; [1-9][\d,]* rpm", printed)  # the plain lines measure the rate
    assert "stopping: requests in flight are cancelled" in printed
    assert "conveyor run (interrupted)" in printed
    assert record["interrupted"] is True
    assert record["cancelled"] > 0  # in flight when interrupted, and not written


def test_kill_9_mid_run_then_resume_gives_each_id_exactly_once(tmp_path: Path):
    """SIGKILL leaves at most a torn last line; the next run repairs it and completes."""
    code, _, _ = interrupted_then_resumed(tmp_path, signal.SIGKILL)
    assert code == -signal.SIGKILL


def test_mock_api_command_serves_until_ctrl_c():
    """`conveyor mock-api` prints its URL once listening, answers, and stops on Ctrl-C."""

    async def main() -> tuple[int, str, int]:
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "conveyor",
            "mock-api",
            "--port",
            "0",
            "--latency-ms",
            "0",
            stdout=asyncio.subprocess.PIPE,
        )
        assert child.stdout is not None
        try:
            async with asyncio.timeout(30):
                ready = (await child.stdout.readline()).decode()
                url = ready.split("listening on ")[1].split()[0]
                seen = await asyncio.to_thread(requests_seen, url)
                child.send_signal(signal.SIGINT)
                rest = (await child.stdout.read()).decode()
                return await child.wait(), rest, seen
        finally:
            if child.returncode is None:
                child.kill()
                await child.wait()

    code, rest, seen = asyncio.run(main())
    assert (code, seen) == (0, 0)
    assert "conveyor mock-api: stopped" in rest


def test_mock_api_command_refuses_bad_settings(capsys):
    """A wrong mock setting is refused with the reason and exit 2."""
    assert main(["mock-api", "--fail", "2"]) == 2
    assert "fail_rate" in capsys.readouterr().err


def test_refund_unused_tokens_is_off_unless_asked(tmp_path: Path):
    """--refund-unused-tokens turns refunds on; without it the estimate of each request stands."""
    import argparse

    from conveyor.cli.run_args import add_arguments, options_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    base = [str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "out.jsonl"), "--tpm", "1000"]
    plain = options_from_args(parser.parse_args(base), {})
    refund = options_from_args(parser.parse_args([*base, "--refund-unused-tokens"]), {})
    assert (plain.limits.refund_unused_tokens, refund.limits.refund_unused_tokens) == (False, True)


def test_a_summary_that_cannot_be_written_is_reported_not_raised(
    tmp_path: Path, mock_url: str, capsys, monkeypatch
):
    """If writing --summary-json fails at the end, the run says so and keeps its exit status."""
    import conveyor.http.output

    def fail(path: Path, text: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(conveyor.http.output, "write_text_atomic", fail)
    write_requests(tmp_path / "in.jsonl", 3)
    assert run_cli(tmp_path, mock_url, "--summary-json", str(tmp_path / "s.json")) == 0
    assert "could not write the summary" in capsys.readouterr().err
    assert id_counts(tmp_path / "out.jsonl") == {"req-0": 1, "req-1": 1, "req-2": 1}


def test_spend_shows_a_cost_only_once_something_was_priced():
    """Tokens always show; the dollars and projection only when an answer had a price."""
    import dataclasses

    from conveyor.cli.run_view import spend_text

    unpriced = dataclasses.replace(PROGRESS, tokens_in=1_000, tokens_out=20)
    assert spend_text(unpriced) == "usage 1,000 in / 20 out tokens"
    priced = dataclasses.replace(unpriced, cost_usd=0.0123, projected_cost_usd=0.5)
    assert spend_text(priced) == "usage 1,000 in / 20 out tokens, $0.0123 (projected $0.5000)"
