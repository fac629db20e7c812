"""Regressions from the CLI audit: clear errors and exit codes instead of tracebacks."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conveyor.cli import main
from conveyor.jobs.errors import StoreError
from conveyor.jobs.stores.sqlite import SqliteStore


def test_a_store_in_a_missing_folder_is_a_store_error_naming_the_path_and_fix(tmp_path: Path):
    """No traceback from sqlite3: StoreError names the folder that does not exist."""
    with pytest.raises(StoreError, match="does not exist; create it first"):
        SqliteStore(tmp_path / "nodir" / "x.db")
    with pytest.raises(StoreError, match="is a directory"):
        SqliteStore(tmp_path)


@pytest.mark.parametrize("command", [["jobs", "ls"], ["worker", "--until-idle"]])
def test_cli_commands_on_a_store_in_a_missing_folder_exit_2(tmp_path: Path, capsys, command):
    """`jobs ls` and `worker` print one line naming the path (exit 2), no traceback."""
    store = f"sqlite:///{tmp_path}/nodir/x.db"
    assert main([*command, "--store", store]) == 2
    err = capsys.readouterr().err
    assert "nodir" in err
    assert "Traceback" not in err


def test_submit_of_a_file_that_is_not_utf8_exits_2_naming_the_line(tmp_path: Path, capsys):
    """A Latin-1 file is refused with its path and line, not a UnicodeDecodeError."""
    items = tmp_path / "items.jsonl"
    items.write_bytes(b'"ok"\n"caf\xe9"\n')
    store = f"sqlite:///{tmp_path}/jobs.db"
    assert main(["jobs", "submit", "t", str(items), "--store", store]) == 2
    err = capsys.readouterr().err
    assert f"{items}:2 is not UTF-8 text" in err


def test_submit_errors_name_the_files_line_like_the_api(tmp_path: Path, capsys):
    """An item refused by the library is reported at its 1-based line (blank lines counted)."""
    items = tmp_path / "items.jsonl"
    items.write_text('1\n\n2\n{"x": 1}\n')
    store = f"sqlite:///{tmp_path}/jobs.db"
    app = tmp_path / "onlyints.py"
    app.write_text(
        "from conveyor import App\napp = App()\n"
        "def check(item):\n    if not isinstance(item, int):\n"
        "        raise ValueError('not an int')\n"
        "@app.task('t', check=check)\nasync def t(item):\n    return item\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        code = main(["jobs", "submit", "t", str(items), "--store", store, "--app", "onlyints:app"])
    finally:
        sys.path.remove(str(tmp_path))
    assert code == 2
    assert f"{items}:4 (item 2) " in capsys.readouterr().err


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (b"[" * 100_000, "nests arrays and objects more than 128 deep, the most accepted"),
        (b"NaN", "is not valid JSON: NaN at column 1 is not a JSON number"),
        (b'"\\ud800"', "is not valid JSON: a lone surrogate \\ud800 at column 2"),
        (b'{"a": 1', "is not valid JSON: it ends too early"),
    ],
)
def test_submit_of_a_line_no_reader_can_take_exits_2_naming_it(tmp_path, capsys, line, problem):
    """Deep nesting, NaN, a lone surrogate, a cut line: one line naming it, no traceback."""
    items = tmp_path / "items.jsonl"
    items.write_bytes(b"1\n" + line + b"\n")
    store = f"sqlite:///{tmp_path}/jobs.db"
    assert main(["jobs", "submit", "t", str(items), "--store", store]) == 2
    err = capsys.readouterr().err
    assert f"{items}:2 {problem}" in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_submit_without_app_warns_that_the_task_was_not_checked(tmp_path: Path, capsys):
    """Without --app the job is written, and a warning says the task name was not checked."""
    items = tmp_path / "items.jsonl"
    items.write_text("1\n")
    store = f"sqlite:///{tmp_path}/jobs.db"
    assert main(["jobs", "submit", "nosuchtask", str(items), "--store", store]) == 0
    err = capsys.readouterr().err
    assert "warning: task 'nosuchtask' was not checked (no --app)" in err


def test_results_to_a_file_in_a_missing_folder_exits_2(tmp_path: Path, capsys):
    """`jobs results ID -o /nonexistent/x.jsonl` says it cannot write there (exit 2)."""
    items = tmp_path / "items.jsonl"
    items.write_text("1\n")
    store = f"sqlite:///{tmp_path}/jobs.db"
    assert main(["jobs", "submit", "t", str(items), "--store", store]) == 0
    job_id = capsys.readouterr().out.strip()
    out = tmp_path / "nodir" / "x.jsonl"
    assert main(["jobs", "results", job_id, "--store", store, "-o", str(out)]) == 2
    assert "cannot write" in capsys.readouterr().err


def test_results_into_a_closed_pipe_ends_quietly(tmp_path: Path, capsys):
    """`jobs results ID | head -2`: a real process whose reader goes away exits 141, silently.

    A real process, because the broken pipe is the operating system's: fast (one short job).
    """
    items = tmp_path / "items.jsonl"
    items.write_text("\n".join(str(n) for n in range(3000)) + "\n")
    store = f"sqlite:///{tmp_path}/jobs.db"
    assert main(["jobs", "submit", "t", str(items), "--store", store]) == 0
    job_id = capsys.readouterr().out.strip()
    command = [sys.executable, "-m", "conveyor", "jobs", "results", job_id, "--store", store]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdout is not None
    head = [proc.stdout.readline() for _ in range(2)]
    proc.stdout.close()
    _, err = proc.communicate(timeout=30)
    assert [json.loads(line)["index"] for line in head] == [0, 1]
    assert b"Traceback" not in err, err
    assert proc.returncode == 141


def test_worker_with_config_gets_the_connections_http_tasks(tmp_path: Path, capsys):
    """`conveyor worker --config` registers the service's http:<name> tasks (and its store)."""
    store = tmp_path / "jobs.db"
    cfg = tmp_path / "conveyor.toml"
    cfg.write_text(
        f'store = "sqlite:///{store}"\n[connections.up]\nbase_url = "http://127.0.0.1:9"\n'
    )
    assert main(["worker", "--config", str(cfg), "--until-idle"]) == 0
    out = capsys.readouterr().out
    assert "tasks http:up;" in out
    assert str(store) in out


def test_a_worker_without_tasks_says_it_will_claim_nothing(tmp_path: Path, capsys):
    """`conveyor worker` without --app / --config warns; it no longer fails queued jobs."""
    store = f"sqlite:///{tmp_path}/jobs.db"
    assert main(["worker", "--store", store, "--until-idle"]) == 0
    assert "no tasks" in capsys.readouterr().err
