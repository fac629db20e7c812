"""The command line on a PostgreSQL store that refuses connections (a port nobody listens on).

What must hold: ``conveyor jobs ...`` and ``conveyor worker`` print one line on stderr that
names the store (host and port, never its password), no traceback, and exit non-zero; the
password appears nowhere in what they print. (``conveyor serve`` on an unreachable store
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
