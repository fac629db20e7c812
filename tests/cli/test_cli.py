"""The command line: pure renderers tested exactly, and the demo end to end."""

import io

import pytest
from rich.console import Console

from conveyor import Summary
from conveyor.cli import build_parser, main
from conveyor.cli.demo import DemoOptions, run_demo
from conveyor.cli.render import Tally, progress_line, summary_table

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


def test_progress_line_without_a_total():
    """For an iterable of unknown length the line leaves out the total and the percentage."""
    line = progress_line(Tally(succeeded=3), 1.5)
    assert line == "3 settled: 3 succeeded, 0 failed, 0 retrying; 2.0 items/s, 1.5 s"


def test_demo_runs_and_settles_every_item():
    """The demo settles all its items and prints the summary (real time: 200 calls of ~5 ms)."""
    console = Console(file=io.StringIO(), width=120, color_system=None)
    assert run_demo(DemoOptions(items=200, concurrency=50, latency_ms=5), console) == 0
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert "items" in out
    assert "│                        200 │" in out or " 200 " in out
    assert "Time the calls need at concurrency 50" in out


def test_help_explains_the_demo(capsys: pytest.CaptureFixture[str]):
    """`conveyor --help` lists the demo with a sentence on what it does."""
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    assert "simulated flaky API" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["demo", "--concurrency", "0"], "0 must be at least 1"),
        (["demo", "--items", "many"], "'many' is not a whole number"),
        (["demo", "--latency-ms", "-5"], "-5 must be a number of milliseconds >= 0"),
        (["demo", "--latency-ms", "nan"], "nan must be a number of milliseconds >= 0"),
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
