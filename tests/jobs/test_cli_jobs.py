"""``conveyor worker`` and ``conveyor jobs ...``: the pure views exactly, then the commands."""

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from conveyor.cli import main
from conveyor.cli.jobs_view import job_line, job_table, jobs_table, watch_view
from conveyor.jobs.model import Counts, Job, JobOptions
from conveyor.jobs.stores.sqlite import SqliteStore

JOB = Job(
    id="0190b1d2-0000-7000-8000-000000000001",
    task="analyze",
    options=JobOptions(concurrency=5, attempts=3, limiters=("openai",)),
    status="running",
    counts=Counts(total=200, pending=100, running=10, succeeded=80, failed=10),
    step="Matching APIs...",
    started_at=1000.0,
)


def _render(renderable: object) -> str:
    console = Console(file=io.StringIO(), width=120, color_system=None)
    console.print(renderable)
    return console.file.getvalue()  # type: ignore[attr-defined,no-any-return]


def test_the_plain_line_says_status_progress_step_counts_and_time():
    """One line per change when not on a terminal: all a log reader needs."""
    assert job_line(JOB, now_s=1065.0) == (
        "0190b1d2-0000-7000-8000-000000000001 running 45% [Matching APIs...]: 90/200 settled:"
        " 80 succeeded, 10 failed, 0 cancelled, 10 running, 100 pending; 1m05s"
    )


def test_the_live_view_shows_the_bar_step_and_counts():
    """The live view has the percentage, the status, the step and the counts."""
    text = _render(watch_view(JOB, now_s=1010.0))
    assert " 45.0% running 10s" in text
    assert "Matching APIs..." in text
    assert "90/200 settled: 80 succeeded, 10 failed" in text


def test_the_tables_show_every_job_fact():
    """ls shows one full id per row; show lists options and counts."""
    listing = _render(jobs_table([JOB], now_s=1010.0))
    assert JOB.id in listing
    assert "45%" in listing
    detail = _render(job_table(JOB, now_s=1010.0))
    assert "concurrency 5, attempts 3, timeout none, limiters openai" in detail
    assert "Matching APIs..." in detail


def test_help_lists_every_action(capsys):
    """`conveyor jobs --help` names the actions and where the store is."""
    with pytest.raises(SystemExit):
        main(["jobs", "--help"])
    out = capsys.readouterr().out
    for action in ("submit", "ls", "show", "watch", "cancel", "retry", "results"):
        assert action in out
    assert "CONVEYOR_STORE" in out


def test_submit_run_show_results_retry_from_the_command_line(tmp_path: Path, capsys):
    """A job goes through the commands: submit, worker, show, results by state, retry, cancel."""
    store = f"sqlite:///{tmp_path}/jobs.db"
    items = tmp_path / "items.jsonl"
    items.write_text("\n".join(json.dumps(n) for n in range(6)) + "\n\n")
    app_file = tmp_path / "cli_app.py"
    app_file.write_text(
        "from conveyor import App\n"
        "app = App()\n"
        "@app.task('half')\n"
        "async def half(n):\n"
        "    if n % 3 == 0:\n"
        "        raise ValueError(f'{n} is a multiple of 3')\n"
        "    return n / 2\n"
    )
    import sys

    sys.path.insert(0, str(tmp_path))
    try:
        assert main(["jobs", "submit", "half", str(items), "--store", store]) == 0
        job_id = capsys.readouterr().out.strip()
        code = main(["worker", "--app", "cli_app:app", "--store", store, "--until-idle"])
        assert code == 0
        capsys.readouterr()
        assert main(["jobs", "show", job_id, "--json", "--store", store]) == 0
        shown = json.loads(capsys.readouterr().out)
        assert shown["status"] == "completed"
        assert shown["counts"]["succeeded"] == 4
        assert main(["jobs", "results", job_id, "--state", "failed", "--store", store]) == 0
        failed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert [f["index"] for f in failed] == [0, 3]
        assert failed[1]["error"] == {"type": "ValueError", "message": "3 is a multiple of 3"}
        assert main(["jobs", "retry", job_id, "--store", store]) == 0
        assert "2 failed item(s) queued again" in capsys.readouterr().out
        assert main(["jobs", "cancel", job_id, "--store", store]) == 0
        assert capsys.readouterr().out.strip() == f"{job_id} cancelled"
        assert main(["jobs", "watch", job_id, "--store", store, "--progress", "plain"]) == 1
        assert " cancelled 100%" in capsys.readouterr().out
        assert main(["jobs", "ls", "--json", "--store", store]) == 0
        [listed] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert listed["counts"]["cancelled"] == 2
    finally:
        sys.path.remove(str(tmp_path))


def test_errors_are_one_line_with_exit_status_2(tmp_path: Path, capsys):
    """A missing job or a foreign store file prints the reason and exits 2."""
    store = f"sqlite:///{tmp_path}/jobs.db"
    assert main(["jobs", "show", "nope", "--store", store]) == 2
    assert "no job store at" in capsys.readouterr().err
    assert not (tmp_path / "jobs.db").exists()  # a read-only command creates nothing
    SqliteStore(tmp_path / "jobs.db")._shutdown()
    assert main(["jobs", "show", "nope", "--store", store]) == 2
    assert "no job 'nope'" in capsys.readouterr().err
    other = tmp_path / "notes.txt"
    other.write_text("not a database" * 100)
    assert main(["jobs", "ls", "--store", str(other)]) == 2
    assert "not a Conveyor job store" in capsys.readouterr().err
