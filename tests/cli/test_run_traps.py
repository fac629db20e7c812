"""The traps of a first `conveyor run`, pinned: options that do nothing, leftovers, bad hints."""

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.cli import main
from conveyor.cli.run_view import progress_line, spend_text, start_line
from conveyor.http import BatchFiles, BatchLimits, BatchTally, Endpoint
from conveyor.http.tally import Progress
from conveyor.mockapi import MockConfig, run_in_process

from ..http.helpers import request_line, write_requests
from .test_run import requests_seen

PROGRESS = Progress(
    done=3,
    total=10,
    succeeded=3,
    failed=0,
    retrying=0,
    requests_per_minute=60.0,
    tokens_per_minute=1_200.0,
    rpm_limit=None,
    tpm_limit=None,
    rate_limited=0,
    elapsed_s=3.0,
    eta_s=7.0,
    tokens_in=30,
    tokens_out=60,
)


@pytest.fixture(scope="module")
def mock_url() -> Iterator[str]:
    """The mock API in a child process, answering at once, shared by this module's tests."""
    with run_in_process(MockConfig(latency_ms=0)) as base_url:
        yield base_url


def run(tmp_path: Path, *extra: str) -> int:
    argv = ["run", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "out.jsonl")]
    return main([*argv, "--progress", "none", *extra])


@pytest.mark.parametrize("shape", ["--limit-window", "--limit-bucket"])
def test_a_limit_shape_without_a_limit_is_refused(tmp_path: Path, mock_url: str, capsys, shape):
    """--limit-window 1 with no --rpm/--tpm paced nothing (429s); now: exit 2, nothing sent."""
    write_requests(tmp_path / "in.jsonl", 3)
    before = requests_seen(mock_url)
    assert run(tmp_path, "--base-url", mock_url, shape, "1") == 2
    err = capsys.readouterr().err
    assert (
        f"{shape} 1s says how the API enforces its limits, but no limit is given: add the"
        " API's limits (--rpm N, --tpm N, or --input-tpm N / --output-tpm N)"
    ) in err
    assert requests_seen(mock_url) == before
    assert not (tmp_path / "out.jsonl").exists()


def test_a_missing_base_url_leaves_no_empty_results_file(tmp_path: Path, capsys):
    """Relative urls without --base-url: refused, and no empty results file is left behind."""
    write_requests(tmp_path / "in.jsonl", 2)
    assert run(tmp_path) == 2
    assert "is relative and no --base-url was given" in capsys.readouterr().err
    assert not (tmp_path / "out.jsonl").exists()


def test_a_refusal_keeps_a_results_file_that_was_there(tmp_path: Path, capsys):
    """Only a file the refused run created is removed: earlier results stay, byte for byte."""
    write_requests(tmp_path / "in.jsonl", 2)
    (tmp_path / "out.jsonl").write_text("")
    assert run(tmp_path) == 2
    capsys.readouterr()
    assert (tmp_path / "out.jsonl").read_text() == ""


def test_an_invalid_line_says_to_fix_it_not_just_to_retry(tmp_path: Path, mock_url: str, capsys):
    """The closing hint of an invalid line says to fix it in the input, then --retry-failed."""
    lines = [request_line("a"), "not json", request_line("c")]
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")
    assert run(tmp_path, "--base-url", mock_url) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert (
        f'1 line(s) of {tmp_path / "in.jsonl"} could not be sent (error "invalid_line" in'
        f" {tmp_path / 'out.jsonl'}, with the reason): fix them in {tmp_path / 'in.jsonl'},"
        " then run the same command with --retry-failed."
    ) in out
    assert "request(s) have failed results" not in out


def test_the_start_line_writes_big_limits_in_full():
    """3,300,000 tpm, not 3.3e+06 tpm (the demo's start line)."""

    class FakePlan:
        files = BatchFiles(input=Path("requests.jsonl"), output=Path("results.jsonl"))
        to_run, already_done = 2_000, 0

    limits = BatchLimits(
        concurrency=50, requests_per_minute=7_200, tokens_per_minute=3_300_000, window_s=1
    )
    line = start_line(FakePlan(), limits, Endpoint(base_url="http://127.0.0.1:1"))  # type: ignore[arg-type]
    assert line.endswith("concurrency 50, 7,200 rpm, 3,300,000 tpm (enforced over 1s windows)")
    assert "e+" not in line


def test_the_progress_line_says_which_tokens_are_estimated_and_which_are_usage():
    """The limiter's tpm is marked ~ (estimated when sent); the answers' tokens say usage."""
    line = progress_line(dataclasses.replace(PROGRESS, cost_usd=0.01, projected_cost_usd=0.0333))
    assert "60 rpm, ~1,200 tpm (~ estimated when sent, until answered);" in line
    assert "usage 30 in / 60 out tokens, $0.0100 (projected $0.0333);" in line


@pytest.mark.parametrize(
    ("cost", "projected"),
    [
        (0.00045000000000000004, 0.00045),  # the same, but formatted $0.0005 and $0.0004
        (0.0005, 0.0004),  # below: never shown
        (0.0005, 0.0005),
    ],
)
def test_a_projection_not_above_the_spend_is_not_shown(cost, projected):
    """Never `$0.0005 (projected $0.0004)`: a projection shows only when it says more."""
    text = spend_text(dataclasses.replace(PROGRESS, cost_usd=cost, projected_cost_usd=projected))
    assert text == f"usage 30 in / 60 out tokens, ${cost:.4f}"


def test_the_projection_is_never_below_the_spend():
    """A run whose every request is done projects what it spent; before that, no less."""
    tally = BatchTally(total=3, succeeded=3, tokens_in=10, cost_usd=0.00045000000000000004)
    assert tally.projected_cost_usd == tally.cost_usd
    tally = BatchTally(total=10, succeeded=2, tokens_in=10, cost_usd=0.002)
    assert tally.projected_cost_usd == pytest.approx(0.01)
    over = BatchTally(total=2, succeeded=3, tokens_in=10, cost_usd=0.003)  # more done than total
    assert over.projected_cost_usd == 0.003
