"""The traps of a first day with ``conveyor jobs``: each one found, pinned, and closed."""

import json
import sys
from pathlib import Path

import pytest

from conveyor.cli import main
from conveyor.cli.jobs_view import job_line, jobs_table
from conveyor.jobs.model import Counts, Job, JobOptions, step_text

from ..services import free_port

PASSWORD = "s3cret-day-one"  # noqa: S105 - a made-up test value


def _job(n: int, **changes: object) -> Job:
    fields: dict[str, object] = {
        "id": f"0190b1d2-0000-7000-8000-{n:012d}",
        "task": "http:openai-gpt-4o-mini-batch",
        "options": JobOptions(),
        "status": "running",
        "counts": Counts(total=1_250_000, pending=1_000, succeeded=1_236_655, failed=12_345),
        "started_at": 1000.0,
    }
    fields.update(changes)
    return Job(**fields)  # type: ignore[arg-type]


def _submit(tmp_path: Path, capsys: pytest.CaptureFixture[str], task: str, *extra: str) -> str:
    items = tmp_path / "items.jsonl"
    items.write_text("1\n2\n")
    store = f"sqlite:///{tmp_path}/jobs.db"
    assert main(["jobs", "submit", task, str(items), "--store", store, *extra]) == 0
    return capsys.readouterr().out.strip()


def test_jobs_ls_fits_80_columns_one_line_per_job(tmp_path: Path, capsys, monkeypatch):
    """At COLUMNS=80, `jobs ls` prints a header and one line per job, none wider than 80."""
    monkeypatch.setenv("COLUMNS", "80")
    store = f"sqlite:///{tmp_path}/jobs.db"
    for task in ("extract", "http:openai-gpt-4o-mini-batch-with-a-long-name", "analyze"):
        _submit(tmp_path, capsys, task)
    assert main(["jobs", "ls", "--store", store]) == 0
    lines = capsys.readouterr().out.rstrip("\n").splitlines()
    assert len(lines) == 4, lines
    assert max(len(line) for line in lines) <= 80
    assert lines[0].split() == ["id", "status", "items", "failed", "task"]
    assert lines[1].split()[1:] == ["queued", "2", "0", "analyze"]
    assert lines[2].endswith("  0  http:openai-gpt-4o…")  # the time gave way to the task


def test_the_ls_view_gives_up_the_time_before_the_task_at_80_columns():
    """Big counts and a long task at 80 columns: the time column goes; ids stay whole."""
    jobs = [_job(1), _job(2, status="cancelling"), _job(3, status="queued", started_at=None)]
    narrow = jobs_table(jobs, now_s=1065.0, width=80).plain.splitlines()
    assert narrow == [
        "id                                    status           items  failed  task",
        "0190b1d2-0000-7000-8000-000000000001  running 99%  1,250,000  12,345  http:open…",
        "0190b1d2-0000-7000-8000-000000000002  cancelling   1,250,000  12,345  http:open…",
        "0190b1d2-0000-7000-8000-000000000003  queued       1,250,000  12,345  http:open…",
    ]
    wide = jobs_table(jobs, now_s=1065.0, width=120).plain.splitlines()
    assert wide[0].split() == ["id", "status", "items", "failed", "time", "task"]
    assert wide[1].endswith("12,345  1m05s  http:openai-gpt-4o-mini-batch")
    assert wide[3].endswith("12,345      -  http:openai-gpt-4o-mini-batch")


def test_a_queued_job_says_what_it_waits_for():
    """A queued job with no step says it waits for a worker with its task; a step wins."""
    queued = _job(1, status="queued", task="extarct", started_at=None)
    assert step_text(queued) == "waiting for a worker with task 'extarct'"
    assert "[waiting for a worker with task 'extarct']" in job_line(queued, now_s=1.0)
    assert step_text(_job(2, step="Matching APIs...")) == "Matching APIs..."
    assert step_text(_job(3)) is None


def test_a_misspelled_task_is_flagged_at_submit_and_its_job_says_why_it_waits(
    tmp_path: Path, capsys
):
    """Without --app, a task no job of the store ran is named, with the close one that did."""
    store = f"sqlite:///{tmp_path}/jobs.db"
    app = tmp_path / "day_one_app.py"
    app.write_text(
        "from conveyor import App\napp = App()\n"
        "@app.task('extract')\nasync def extract(item):\n    return item\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        _submit(tmp_path, capsys, "extract")
        assert main(["worker", "--app", "day_one_app:app", "--store", store, "--until-idle"]) == 0
        capsys.readouterr()
        items = tmp_path / "items.jsonl"
        assert main(["jobs", "submit", "extarct", str(items), "--store", store]) == 0
        captured = capsys.readouterr()
        job_id = captured.out.strip()
        assert (
            "warning: task 'extarct' was not checked (no --app) and no recent job here ran it"
            " (these did: extract; did you mean 'extract'?): the job waits, queued, until a"
            " worker with task 'extarct' starts" in captured.err
        )
        assert main(["jobs", "show", job_id, "--store", store, "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["status"] == "queued"
        assert main(["jobs", "show", job_id, "--store", store]) == 0
        assert "waiting for a worker with task 'extarct'" in capsys.readouterr().out
        # A task that ran here before is not flagged.
        assert main(["jobs", "submit", "extract", str(items), "--store", store]) == 0
        assert "warning" not in capsys.readouterr().err
    finally:
        sys.path.remove(str(tmp_path))


def test_submit_with_app_refuses_a_task_it_lacks_listing_its_tasks(tmp_path: Path, capsys):
    """With --app, an unknown task is refused (exit 2, nothing written) with the app's tasks."""
    app = tmp_path / "day_one_two.py"
    app.write_text(
        "from conveyor import App\napp = App()\n"
        "@app.task('extract')\nasync def extract(item):\n    return item\n"
        "@app.task('analyze')\nasync def analyze(item):\n    return item\n"
    )
    items = tmp_path / "items.jsonl"
    items.write_text("1\n")
    store = f"sqlite:///{tmp_path}/jobs.db"
    sys.path.insert(0, str(tmp_path))
    try:
        argv = ["jobs", "submit", "extarct", str(items), "--store", store]
        assert main([*argv, "--app", "day_one_two:app"]) == 2
    finally:
        sys.path.remove(str(tmp_path))
    captured = capsys.readouterr()
    assert "unknown task 'extarct': the app has analyze, extract" in captured.err
    assert captured.out == ""


def test_watch_with_progress_none_prints_only_the_outcome(tmp_path: Path, capsys):
    """`jobs watch --progress none` prints one line, once the job is done, and its exit status."""
    store = f"sqlite:///{tmp_path}/jobs.db"
    job_id = _submit(tmp_path, capsys, "t")
    assert main(["jobs", "cancel", job_id, "--store", store]) == 0
    capsys.readouterr()
    assert main(["jobs", "watch", job_id, "--store", store, "--progress", "none"]) == 1
    [line] = capsys.readouterr().out.splitlines()
    assert line.startswith(f"{job_id} cancelled 100%")


def test_db_upgrade_reads_the_store_from_conveyor_store(tmp_path: Path, capsys, monkeypatch):
    """`conveyor db upgrade` with no --store upgrades $CONVEYOR_STORE, as every command does."""
    monkeypatch.setenv("CONVEYOR_STORE", f"sqlite:///{tmp_path}/from-env.db")
    monkeypatch.chdir(tmp_path)
    assert main(["db", "upgrade"]) == 0
    assert "conveyor db upgrade: schema version 0 -> " in capsys.readouterr().out
    assert (tmp_path / "from-env.db").exists()
    assert main(["db", "upgrade"]) == 0  # the same store again: nothing left to do
    assert "the schema is current" in capsys.readouterr().out
    assert not (tmp_path / "conveyor-jobs.db").exists()


def _unreachable() -> str:
    return f"postgresql://conveyor:{PASSWORD}@127.0.0.1:{free_port()}/jobs"


@pytest.mark.parametrize(
    "command",
    [
        ["jobs", "ls"],
        ["jobs", "show", "some-id"],
        ["jobs", "watch", "some-id"],
        ["jobs", "cancel", "some-id"],
        ["jobs", "retry", "some-id"],
        ["jobs", "budget", "some-id", "5"],
        ["jobs", "results", "some-id"],
        ["jobs", "submit", "t", "ITEMS"],
        ["db", "upgrade"],
        ["worker", "--base-url", "http://127.0.0.1:9", "--until-idle"],
        ["serve", "--port", "0"],
    ],
    ids=lambda c: " ".join(c[:2]),
)
def test_an_unreachable_store_is_one_line_naming_it_and_the_fix(tmp_path: Path, capsys, command):
    """Every command on a store that refuses connections: one line, no password, exit 75.

    `serve` refuses to start (before it listens) rather than answer 503 to every call.
    """
    pytest.importorskip("asyncpg")
    if command[0] == "serve":
        pytest.importorskip("uvicorn")
    items = tmp_path / "items.jsonl"
    items.write_text("1\n")
    store = _unreachable()
    argv = [str(items) if a == "ITEMS" else a for a in command]
    assert main([*argv, "--store", store]) == 75
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    assert PASSWORD not in out + err
    [line] = err.splitlines()
    assert "the job store postgresql://***@127.0.0.1:" in line
    assert "is unavailable" in line
    assert "check that it is running, reachable" in line
    if command[0] == "serve":
        assert line.endswith(
            "; not started (--wait-for-store starts anyway and answers 503 until the store is back)"
        )
        assert "listening" not in out


def test_serve_reads_the_store_from_conveyor_store_without_a_config(monkeypatch, tmp_path):
    """`conveyor serve` with neither --store nor --config serves $CONVEYOR_STORE."""
    from conveyor.cli import build_parser
    from conveyor.cli.serve import _config

    monkeypatch.setenv("CONVEYOR_STORE", f"sqlite:///{tmp_path}/env.db")
    assert _config(build_parser().parse_args(["serve"])).store == f"sqlite:///{tmp_path}/env.db"
    given = build_parser().parse_args(["serve", "--store", "memory:"])
    assert _config(given).store == "memory:"
