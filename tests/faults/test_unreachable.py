"""The command line on a PostgreSQL store that refuses connections (a port nobody listens on).

What must hold: ``conveyor jobs ...`` and ``conveyor worker --until-idle`` print one line on
stderr that names the store (host and port, never its password), no traceback, and exit
non-zero; the password appears nowhere in what they print. A worker without ``--until-idle``
waits for its store instead, saying so once. (``conveyor serve`` on an unreachable store
starts and reports it instead: see ``test_service.py``.)
"""

from __future__ import annotations

import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from ..services import free_port
from .harness import ROOT

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.faults

PASSWORD = "s3cret-pw"  # noqa: S105 - a fake one: it must never be shown


def _conveyor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "conveyor", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    "command",
    [
        ["jobs", "ls"],
        ["jobs", "show", "01a24a2b-0000-7000-8000-000000000000"],
        ["jobs", "submit", "work", "ITEMS"],
        ["worker", "--app", "tests.faults.fault_app:app", "--until-idle"],
    ],
    ids=["jobs-ls", "jobs-show", "jobs-submit", "worker"],
)
def test_a_refused_store_is_one_line_naming_it_without_its_password(command, tmp_path: Path):
    """One line on stderr naming host:port, no traceback, exit != 0, the password nowhere."""
    port = free_port()
    store = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{port}/x"
    items = tmp_path / "items.jsonl"
    items.write_text("1\n2\n")
    args = [str(items) if a == "ITEMS" else a for a in command]
    done = _conveyor(*args, "--store", store)
    assert done.returncode not in (0, None), done.stdout
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"127.0.0.1:{port}" in lines[0], lines[0]
    assert PASSWORD not in done.stdout + done.stderr


@pytest.mark.timeout(60)
def test_a_worker_that_runs_for_good_waits_for_its_store_saying_so_once(tmp_path: Path):
    """Without --until-idle, a worker started before its store waits: one line, no exit."""
    import os
    import time

    from .harness import Proc, wait_until

    port = free_port()
    store = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{port}/x"
    args = ["worker", "--app", "tests.faults.fault_app:app", "--store", store]
    worker = Proc("worker", args, dict(os.environ), tmp_path)
    try:
        wait_until(
            "the worker says its store is unavailable",
            lambda: "is unavailable" in worker.stderr(),
            deadline_s=20,
            alive=[worker],
        )
        time.sleep(6)  # real time: more than one retry at the 5 s cap, still one line
        worker.assert_alive("while its store is unreachable")
        err = worker.stderr()
        assert err.count("the store is unavailable while") == 1, err
        assert f"127.0.0.1:{port}" in err
        assert "Traceback" not in err
        assert worker.stop() == 0
    finally:
        worker.kill()
    assert PASSWORD not in worker.output()
