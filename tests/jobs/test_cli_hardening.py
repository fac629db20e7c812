"""Regressions from the CLI audit: clear errors and exit codes instead of tracebacks."""

import gc
import json
import os
import sqlite3
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


@pytest.mark.parametrize("action", [["ls"], ["show", "some-id"]])
def test_jobs_commands_on_an_unreachable_store_print_one_line_and_exit_75(capsys, action):
    """A store that refuses connections: one line naming it (no password), exit 75, no trace."""
    pytest.importorskip("asyncpg")
    from ..services import free_port

    store = f"postgresql://conveyor:s3cret@127.0.0.1:{free_port()}/jobs"
    assert main(["jobs", *action, "--store", store]) == 75
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "is unavailable" in err
    assert "127.0.0.1" in err
    assert "s3cret" not in err
    assert "Traceback" not in err


def _refused_store_urls() -> list[str]:
    """Store URLs the server or the driver refuses for good, each with a password in it."""
    from urllib.parse import urlsplit

    from ..services import postgres_url

    where = urlsplit(postgres_url()).netloc.rpartition("@")[2]
    return [
        f"postgresql://no_such_role:s3cretPW@{where}/test",  # a login the server refuses
        f"postgresql://{where}/test?user=no_such_role&password=s3cretPW",
        f"postgresql://postgres:s3cretPW@{where}/no_such_database",
        f"postgresql://postgres:s3cretPW@{where}/test?sslmode=nonsense",  # the driver refuses
        f"postgresql://postgres:s3cretPW@{where}/test?target_session_attrs=x&password=s3cretPW",
        "postgresql://postgres:s3cretPW@127.0.0.1:notaport/test",
        "postgresql://postgres:[s3cretPW@127.0.0.1/test",  # a "[" the URL parser refuses
    ]


@pytest.mark.parametrize("command", [["jobs", "ls"], ["worker", "--until-idle"]])
def test_a_store_that_refuses_the_login_or_the_url_is_one_line_and_exit_2(capsys, command):
    """A wrong role, database or option: one line naming the store and the reason, no password."""
    for store in _refused_store_urls():
        assert main([*command, "--store", store]) == 2, store
        out, err = capsys.readouterr()
        assert "Traceback" not in err
        assert "s3cret" not in out + err
        refusal = err.strip().splitlines()[-1]  # a worker first warns that it has no task
        assert refusal.startswith(("conveyor jobs ls: ", "conveyor worker: ")), err
        assert "refused the connection" in refusal or "percent-encode" in refusal, err
        assert "postgresql://***@" in refusal or "password=***" in refusal, err


class FailingCommit:
    """A connection whose COMMIT fails as on a full disk; it records what it was asked."""

    def __init__(self) -> None:
        self.statements: list[str] = []
        self.in_transaction = False

    def execute(self, sql: str) -> None:
        self.statements.append(sql)
        if sql == "BEGIN IMMEDIATE":
            self.in_transaction = True
        elif sql == "COMMIT":
            raise sqlite3.OperationalError("database or disk is full")
        elif sql == "ROLLBACK":
            self.in_transaction = False


def test_a_commit_that_fails_is_rolled_back_so_the_store_works_again():
    """Disk full at COMMIT: the transaction is rolled back (else every later BEGIN fails)."""
    from conveyor.jobs.stores.sqlite import _Tx

    conn = FailingCommit()
    with pytest.raises(sqlite3.OperationalError, match="full"), _Tx(conn):  # type: ignore[arg-type]
        pass
    assert conn.statements == ["BEGIN IMMEDIATE", "COMMIT", "ROLLBACK"]
    assert not conn.in_transaction


def test_sqlite_errors_that_pass_are_store_unavailable_and_bugs_are_not(tmp_path: Path):
    """Disk full, locked, I/O errors: StoreUnavailable naming the file; a bad query is not."""
    import asyncio

    from conveyor.jobs.errors import StoreUnavailable

    store = SqliteStore(tmp_path / "jobs.db")

    def full(*_args: object) -> int:
        raise sqlite3.OperationalError("database or disk is full")

    def bug(*_args: object) -> int:
        raise sqlite3.OperationalError("no such table: jobz")

    async def main_() -> None:
        store._writer.requeue_expired = full  # type: ignore[method-assign,assignment]
        with pytest.raises(StoreUnavailable, match=r"jobs\.db.*disk is full"):
            await store.requeue_expired()
        store._writer.requeue_expired = bug  # type: ignore[method-assign,assignment]
        with pytest.raises(sqlite3.OperationalError, match="no such table"):
            await store.requeue_expired()
        await store.close()

    asyncio.run(main_())


PASSWORD = "hunter2-store-password"  # noqa: S105 - a made-up test value


def test_the_worker_start_up_line_shows_its_store_and_redis_without_passwords(pg: str, capsys):
    """`conveyor worker` names its PostgreSQL store and Redis limits with the userinfo hidden.

    PostgreSQL's test server trusts local connections: the password is sent nowhere.
    """
    store = pg.replace("postgresql://postgres@", f"postgresql://postgres:{PASSWORD}@", 1)
    assert PASSWORD in store
    limits = f"redis://admin:{PASSWORD}@127.0.0.1:6379/0"
    assert main(["worker", "--store", store, "--limits", limits, "--until-idle"]) == 0
    out, err = capsys.readouterr()
    assert PASSWORD not in out + err
    assert "store postgresql://***@127.0.0.1:5432/test?schema=" in out
    assert "limits in redis://***@127.0.0.1:6379/0" in out


def test_a_store_url_that_is_refused_is_named_without_its_password(capsys):
    """An unknown store scheme is one line naming the URL, its userinfo hidden."""
    store = f"mysql://app:{PASSWORD}@db/jobs"
    assert main(["jobs", "ls", "--store", store]) == 2
    err = capsys.readouterr().err
    assert "'mysql://***@db/jobs'" in err
    assert PASSWORD not in err


def test_the_postgres_store_shows_its_url_without_the_password():
    """PostgresStore.url, what messages name, has no userinfo; the driver still gets it all."""
    from conveyor.jobs.stores.postgres import PostgresStore

    store = PostgresStore(f"postgresql://app:{PASSWORD}@db:5432/jobs?schema=conveyor")
    assert store.url == "postgresql://***@db:5432/jobs?schema=conveyor"
    assert PASSWORD in store._dsn


def test_a_query_fault_is_raised_whatever_its_text_and_a_busy_file_passes(tmp_path: Path):
    """SQLite's own errors are told apart by their code: SQLITE_ERROR is a bug, BUSY passes.

    Before, only a few texts counted as bugs: "too many SQL variables" was retried forever
    as an outage.
    """
    store = SqliteStore(tmp_path / "jobs.db")
    conn = sqlite3.connect(":memory:")
    conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 0)
    with pytest.raises(sqlite3.OperationalError, match="too many SQL variables") as bug:
        conn.execute("SELECT ?", (1,))
    assert store._unavailable(bug.value) is None
    other = sqlite3.connect(tmp_path / "jobs.db", timeout=0)
    other.execute("BEGIN IMMEDIATE")
    locked = sqlite3.connect(tmp_path / "jobs.db", timeout=0)
    with pytest.raises(sqlite3.OperationalError, match="locked") as busy:
        locked.execute("BEGIN IMMEDIATE")
    assert store._unavailable(busy.value) is not None
    for c in (conn, other, locked):
        c.close()
    store._shutdown()


def test_an_error_after_sqlite_rolled_back_by_itself_is_the_one_raised():
    """A failed statement that ended the transaction (disk full) is raised as it is.

    Before, the ROLLBACK that followed failed ("cannot rollback - no transaction is
    active") and its error hid the real one.
    """
    from conveyor.jobs.stores.sqlite import _Tx

    conn = sqlite3.connect(":memory:", isolation_level=None)

    def write() -> None:
        with _Tx(conn):
            conn.execute("ROLLBACK")  # what SQLite does itself on SQLITE_FULL
            raise sqlite3.OperationalError("database or disk is full")

    with pytest.raises(sqlite3.OperationalError, match="disk is full"):
        write()
    assert not conn.in_transaction
    conn.close()


def test_submit_again_with_the_same_idempotency_key_prints_the_first_job(tmp_path, capsys):
    """A submit retried with --idempotency-key (its answer lost) creates no second job."""
    items = tmp_path / "items.jsonl"
    items.write_text("".join(f"{n}\n" for n in range(50)))
    store = f"sqlite:///{tmp_path}/jobs.db"
    submit = ["jobs", "submit", "t", str(items), "--store", store, "--idempotency-key", "k1"]
    assert main(submit) == 0
    first = capsys.readouterr().out.strip()
    assert main(submit) == 0
    assert capsys.readouterr().out.strip() == first
    assert main(["jobs", "ls", "--store", store, "--json"]) == 0
    assert [json.loads(line)["id"] for line in capsys.readouterr().out.splitlines()] == [first]


def test_an_idempotency_key_reused_for_another_file_exits_2_naming_the_first_job(tmp_path, capsys):
    """The same key with other items is refused (exit 2), naming the job the key made."""
    store = f"sqlite:///{tmp_path}/jobs.db"
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text("1\n")
    b.write_text("2\n")
    assert main(["jobs", "submit", "t", str(a), "--store", store, "--idempotency-key", "k"]) == 0
    first = capsys.readouterr().out.strip()
    assert main(["jobs", "submit", "t", str(b), "--store", store, "--idempotency-key", "k"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"was used for another submit (job {first}" in captured.err
    assert "Traceback" not in captured.err


def test_a_refused_submit_closes_the_items_file_at_once(tmp_path: Path, capsys, monkeypatch):
    """A submit refused midway through the file closes it at once, not when the collector runs.

    The collector is off during the call: a file left to it would still be open after.
    """
    items = tmp_path / "items.jsonl"
    items.write_text('1\n{"x": 1}\n2\n')
    app = tmp_path / "onlyints2.py"
    app.write_text(
        "from conveyor import App\napp = App()\n"
        "def check(item):\n    if not isinstance(item, int):\n"
        "        raise ValueError('not an int')\n"
        "@app.task('t', check=check)\nasync def t(item):\n    return item\n"
    )
    opened = []
    real_open = Path.open

    def recording_open(self: Path, *args: object, **kwargs: object) -> object:
        handle = real_open(self, *args, **kwargs)  # type: ignore[call-overload]
        if self.name == "items.jsonl":
            opened.append(handle)
        return handle

    monkeypatch.setattr(Path, "open", recording_open)
    store = f"sqlite:///{tmp_path}/jobs.db"
    sys.path.insert(0, str(tmp_path))
    gc.disable()
    try:
        code = main(["jobs", "submit", "t", str(items), "--store", store, "--app", "onlyints2:app"])
        still_open = [not handle.closed for handle in opened]
    finally:
        gc.enable()
        sys.path.remove(str(tmp_path))
    assert code == 2
    assert "(item 1) " in capsys.readouterr().err
    assert still_open == [False]
