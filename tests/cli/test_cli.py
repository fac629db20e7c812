"""The command line: pure renderers tested exactly, and the demo end to end."""

import io
import json
import re

import pytest
from rich.console import Console

from conveyor import Summary
from conveyor.cli import build_parser, main
from conveyor.cli.demo import DemoOptions, demo_requests, ideal_line, run_demo
from conveyor.cli.render import summary_table

SUMMARY = Summary(
    total=10,
    succeeded=8,
    failed=1,
    cancelled=1,
    retries=3,
    duration_s=2.0,
    latency_mean_s=0.05,
    latency_p50_s=0.04,
    latency_p95_s=0.09,
    latency_p99_s=0.1,
    latency_max_s=0.25,
    throughput_per_s=4.5,
    max_concurrency=4,
    concurrency=5,
)


def _render(renderable: object) -> str:
    console = Console(file=io.StringIO(), width=80, color_system=None)
    console.print(renderable)
    return console.file.getvalue()  # type: ignore[attr-defined,no-any-return]


def test_summary_table_shows_every_figure():
    """The summary table lists counts, duration, rate, latencies and concurrency, formatted."""
    text = _render(summary_table(SUMMARY))
    lines = [" ".join(line.strip("│┌┐└┘├┤─ ").split()) for line in text.splitlines()]
    assert "items │ 10" in lines
    assert "failed │ 1" in lines
    assert "duration │ 2.00 s" in lines
    assert "throughput │ 4.5 items/s" in lines
    assert "latency p50 / p95 / p99 │ 40.0 ms / 90.0 ms / 100.0 ms" in lines
    assert "concurrency used / allowed │ 4 / 5" in lines


def test_demo_runs_the_batch_against_the_mock_api_and_compares_with_the_ideal(tmp_path):
    """The demo sends its file through `conveyor run`, settles all, and ends with the ideal line.

    Real time against the mock API in its own process: 120 requests at 5 ms, about a second.
    """
    console = Console(file=io.StringIO(), width=200, color_system=None)
    options = DemoOptions(
        requests=120, concurrency=20, rpm=60_000, tpm=10_000_000, latency_ms=5, keep=tmp_path
    )
    assert run_demo(options, console) == 0
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert "$ conveyor run " in out
    assert "refused 0 with 429" in out
    assert re.search(r"Ideal under these limits for the 1\d\d requests the API saw", out)
    assert re.search(r": \d+\.\d{3}x the ideal\.", out)  # its speed is bench/s, not this test's
    results = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert sorted(r["custom_id"] for r in results) == [f"email-{i:05d}" for i in range(120)]
    assert all(r["error"] is None for r in results)


def test_demo_requests_vary_in_size_and_are_seeded():
    """The demo's requests are the same for a seed, and their sizes vary (so tokens bind too)."""
    first, again = demo_requests(50, seed=3), demo_requests(50, seed=3)
    assert first == again
    sizes = {len(r["body"]["messages"][1]["content"]) for r in first}
    assert len(sizes) > 40


def test_the_ideal_line_states_the_ratio():
    """The closing line gives what the API saw, the ideal those limits allow and the ratio."""
    line = ideal_line(
        active_s=10.3,
        requests_seen=1_530,
        retried=30,
        tokens=150_000,
        options=DemoOptions(requests=1_500, rpm=9_000, tpm=1_800_000, latency_ms=150),
    )
    # 1,530 requests at 150 a window need 11 windows: 10 s, plus one latency.
    assert line == (
        "Ideal under these limits for the 1,530 requests the API saw (30 of them retries):"
        " 10.15 s; this run took 10.30 s from its first request to its last answer: 1.015x"
        " the ideal."
    )


def test_help_explains_the_demo(capsys: pytest.CaptureFixture[str]):
    """`conveyor --help` lists the demo with a sentence on what it does."""
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    assert "local rate-limited mock API" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["demo", "--concurrency", "0"], "0 must be at least 1"),
        (["demo", "--requests", "many"], "'many' is not a whole number"),
        (["demo", "--rpm", "0"], "0 must be at least 1"),
        (["demo", "--latency=-5ms"], "'-5ms' is not a duration: write it like 30s, 500ms"),
        (["demo", "--latency", "nan"], "'nan' is not a duration"),
        (["demo", "--latency-ms", "-5"], "'-5' is not a duration"),
    ],
)
def test_bad_numbers_are_refused_with_the_reason(argv, message, capsys):
    """Bad numbers are refused by the parser, naming the value and what it must be."""
    with pytest.raises(SystemExit):
        main(argv)
    assert message in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]):
    """--version prints the package version."""
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.startswith("conveyor 0.")
