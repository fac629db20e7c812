"""One duration style and one meaning of attempts, on every command; old spellings still work."""

import argparse
import re

import pytest

from conveyor._flags import duration_text, parse_duration
from conveyor.cli import build_parser
from conveyor.cli.run_args import options_from_args


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


#: Every duration flag: the command line before it, the flag, and where its seconds land.
DURATION_FLAGS = [
    (["run", "in.jsonl", "-o", "out.jsonl"], "--timeout", "timeout"),
    (["run", "in.jsonl", "-o", "out.jsonl", "--rpm", "60"], "--limit-window", "limit_window"),
    (["run", "in.jsonl", "-o", "out.jsonl", "--rpm", "60"], "--limit-bucket", "limit_bucket"),
    (["run", "in.jsonl", "-o", "out.jsonl"], "--progress-interval", "progress_interval"),
    (["demo"], "--latency", "latency_s"),
    (["mock-api"], "--latency", "latency_s"),
    (["mock-api"], "--window", "window_s"),
    (["mock-api"], "--burst", "burst_s"),
    (["mock-api"], "--hang-for", "hang_s"),
    (["jobs", "submit", "t", "f.jsonl"], "--timeout", "timeout_s"),
    (["jobs", "watch", "some-id"], "--interval", "interval_s"),
    (["worker"], "--lease", "lease_s"),
    (["worker"], "--grace", "grace_s"),
    (["worker"], "--flush-interval", "flush_interval_s"),
    (["serve"], "--lease", "lease_s"),
    (["serve"], "--grace", "grace_s"),
]


@pytest.mark.parametrize(("before", "flag", "dest"), DURATION_FLAGS)
@pytest.mark.parametrize(
    ("value", "seconds"), [("30s", 30.0), ("500ms", 0.5), ("2m", 120.0), ("1.5", 1.5)]
)
def test_every_duration_flag_takes_every_duration_style(before, flag, dest, value, seconds):
    """30s, 500ms, 2m and a bare number of seconds mean the same on every duration flag."""
    assert getattr(parse(*before, flag, value), dest) == seconds


def _visible_options(parser: argparse.ArgumentParser, path: str = "conveyor") -> list[str]:
    """Every option string shown in some --help, as 'command --flag'."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _visible_options(sub, f"{path} {name}")
        elif action.help != argparse.SUPPRESS:
            found += [f"{path} {option}" for option in action.option_strings]
    return found


def test_no_flag_shown_in_help_carries_a_unit_in_its_name():
    """The units are in the values (30s, 500ms), not in the names: no --x-s, --x-ms left."""
    options = _visible_options(build_parser())
    assert "conveyor worker --lease" in options
    assert [o for o in options if re.search(r"-(s|ms)$", o)] == []


@pytest.mark.parametrize(
    ("argv", "dest", "value", "note"),
    [
        (["jobs", "submit", "t", "f", "--timeout-s", "60"], "timeout_s", 60.0, "--timeout 60s"),
        (["jobs", "watch", "j", "--interval-s", "0.25"], "interval_s", 0.25, "--interval 250ms"),
        (["worker", "--lease-s", "10"], "lease_s", 10.0, "--lease 10s"),
        (["worker", "--grace-s", "5"], "grace_s", 5.0, "--grace 5s"),
        (
            ["worker", "--flush-interval-s", "0.05"],
            "flush_interval_s",
            0.05,
            "--flush-interval 50ms",
        ),
        (["serve", "--lease-s", "2"], "lease_s", 2.0, "--lease 2s"),
        (["serve", "--grace-s", "1"], "grace_s", 1.0, "--grace 1s"),
        (["demo", "--latency-ms", "150"], "latency_s", 0.15, "--latency 150ms"),
        (["mock-api", "--latency-ms", "5"], "latency_s", 0.005, "--latency 5ms"),
        (["mock-api", "--window-s", "1"], "window_s", 1.0, "--window 1s"),
        (["mock-api", "--hang-s", "30"], "hang_s", 30.0, "--hang-for 30s"),
        (["run", "i", "-o", "o", "--retries", "0"], "attempts", 1, "--attempts 1"),
        (["run", "i", "-o", "o", "--retries", "5"], "attempts", 6, "--attempts 6"),
    ],
)
def test_an_old_spelling_still_works_and_says_what_to_write(capsys, argv, dest, value, note):
    """--lease-s 10 is --lease 10s (its bare number in its old unit), with a note on stderr."""
    assert getattr(parse(*argv), dest) == pytest.approx(value)
    captured = capsys.readouterr()
    old = next(a for a in argv if a.startswith("--") and a.endswith(("-s", "-ms", "retries")))
    assert f"note: {old} is deprecated; write {note} (it still works for now)" in captured.err
    assert captured.out == ""


def test_the_new_spellings_print_no_note(capsys):
    """Only an old spelling prints a note."""
    parse("worker", "--lease", "10s", "--grace", "5s", "--flush-interval", "50ms")
    assert capsys.readouterr().err == ""


def test_run_counts_attempts_as_jobs_do():
    """`run --attempts 3` is three tries in all: the Retry the run gets; the default is 6."""
    args = parse("run", "in.jsonl", "-o", "out.jsonl", "--attempts", "3")
    assert options_from_args(args, {}).retry.attempts == 3
    default = parse("run", "in.jsonl", "-o", "out.jsonl")
    assert options_from_args(default, {}).retry.attempts == 6
    old = parse("run", "in.jsonl", "-o", "out.jsonl", "--retries", "2")
    assert options_from_args(old, {}).retry.attempts == 3


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30.0), ("500ms", 0.5), ("2m", 120.0), ("1h", 3600.0), ("1.5", 1.5), (" .5s ", 0.5)],
)
def test_durations_parse_in_every_unit(text, seconds):
    """A duration is a number and an optional unit: ms, s, m or h; bare means seconds."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("fast", "'fast' is not a duration: write it like 30s, 500ms, 2m or a number of seconds"),
        ("-1s", "'-1s' is not a duration"),
        ("1d", "'1d' is not a duration"),
        ("0", "'0': the duration must be more than 0, e.g. 1s"),
    ],
)
def test_a_bad_duration_says_how_to_write_one(text, message):
    """What is not a duration, or is 0, is refused saying how to write one."""
    with pytest.raises(argparse.ArgumentTypeError, match=re.escape(message)):
        parse_duration(text)


def test_durations_are_shown_as_they_are_written():
    """The note's value is written the new way: whole seconds, or milliseconds below one."""
    assert [duration_text(s) for s in (30.0, 0.2, 1.5, 0.0005)] == ["30s", "200ms", "1.5s", "0.5ms"]


@pytest.mark.parametrize(
    "before", [["run", "in.jsonl", "-o", "out.jsonl"], ["worker", "--base-url", "http://x"]]
)
def test_run_and_worker_read_headers_alike(before: list[str], capsys):
    """--header and --header-env are parsed into pairs, and refused alike, on both commands."""
    args = parse(*before, "--header", "X-Team: a", "--header-env", "Authorization=TOKEN")
    assert (args.header, args.header_env) == ([("X-Team", "a")], [("Authorization", "TOKEN")])
    with pytest.raises(SystemExit):
        parse(*before, "--header", "no colon")
    assert "write it as 'Name: value'" in capsys.readouterr().err
