"""Help on every command: each subcommand described, each argument explained, no dead ends."""

import argparse

import pytest

from conveyor.cli import build_parser, main


def _commands(
    parser: argparse.ArgumentParser, path: str = "conveyor"
) -> list[tuple[str, argparse.ArgumentParser]]:
    """Every command and action with its parser, the top one first."""
    found = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _commands(sub, f"{path} {name}")
    return found


COMMANDS = _commands(build_parser())


def test_every_command_is_found():
    """The walk reaches the actions of jobs, keys and db (so the checks below mean something)."""
    names = {path for path, _ in COMMANDS}
    assert {"conveyor jobs results", "conveyor keys revoke", "conveyor db upgrade"} <= names
    assert len(names) > 20


@pytest.mark.parametrize(("path", "parser"), COMMANDS[1:], ids=[p for p, _ in COMMANDS[1:]])
def test_every_subcommand_has_a_description(path, parser):
    """`conveyor X --help` says what X does, for every command and action."""
    assert parser.description, path


@pytest.mark.parametrize(("path", "parser"), COMMANDS, ids=[p for p, _ in COMMANDS])
def test_every_argument_has_help(path, parser):
    """Each option and positional argument shown in --help has a line saying what it is."""
    for action in parser._actions:
        if action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
            continue
        if isinstance(action, argparse._SubParsersAction):
            assert all(choice.help for choice in action._choices_actions), path
            continue
        assert action.help, f"{path} {action.option_strings or action.dest}"


@pytest.mark.parametrize(
    ("command", "actions"),
    [
        ("jobs", ["submit", "ls", "show", "watch", "cancel", "retry", "budget", "results"]),
        ("keys", ["add", "ls", "revoke"]),
        ("db", ["upgrade"]),
    ],
)
def test_a_command_without_its_action_lists_the_actions(capsys, command, actions):
    """`conveyor jobs` alone prints each action with its one line of help, and exits 2."""
    assert main([command]) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert lines[0] == f"conveyor {command}: give an action:"
    assert [line.split()[0] for line in lines[1:-1]] == actions
    assert all(len(line.split(maxsplit=1)) == 2 for line in lines[1:-1])  # each has its help
    assert lines[-1] == f"(`conveyor {command} ACTION --help` for its options)"
    assert "error:" not in captured.err


def test_worker_help_lists_each_option_once_and_keeps_its_examples_apart(capsys, monkeypatch):
    """--app, --base-url and --config once each; the PostgreSQL example keeps its two lines."""
    monkeypatch.setenv("COLUMNS", "100")
    with pytest.raises(SystemExit):
        main(["worker", "--help"])
    text = capsys.readouterr().out
    for option in ("--app MODULE:NAME", "--base-url URL", "--config FILE"):
        assert text.count(f"  {option}") == 1, option
    lines = text.splitlines()
    at = lines.index(
        "  conveyor worker --app myproject.jobs:app --store postgresql://db/conveyor \\"
    )
    assert lines[at + 1].strip().startswith("--limits redis://redis:6379/0")
