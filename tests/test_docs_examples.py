"""The examples of the how-to pages run as written: each Python or bash block is a whole program."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
#: Pages whose every Python block is a complete program (the others show fragments).
RUNNABLE = [
    "howto/dynamodb-bulk-writes.md",
    "howto/limit-claude.md",
    "howto/run-claude-batches.md",
]
#: How each kind of block is run: a fresh interpreter, or bash with this venv's commands.
RUNNERS = {"python": [sys.executable], "bash": ["bash", "-e"]}


def _blocks() -> list[tuple[str, str, int, str]]:
    found = []
    for page in RUNNABLE:
        text = (DOCS / page).read_text(encoding="utf-8")
        for kind in RUNNERS:
            pattern = rf"```{kind}\n(.*?)```"
            for number, code in enumerate(re.findall(pattern, text, re.DOTALL), 1):
                found.append((page, kind, number, code))
    return found


@pytest.mark.parametrize(("page", "kind", "number", "code"), _blocks(), ids=lambda v: str(v)[:40])
def test_the_example_runs_as_written(page, kind, number, code, tmp_path):
    """Run the block on its own; it must exit 0 (its own checks included)."""
    script = tmp_path / f"example.{'py' if kind == 'python' else 'sh'}"
    script.write_text(code, encoding="utf-8")
    bin_dir = str(Path(sys.executable).parent)  # `conveyor` is installed beside the interpreter
    done = subprocess.run(
        [*RUNNERS[kind], str(script)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")},
    )
    assert done.returncode == 0, f"{page} {kind} block {number}:\n{done.stdout}\n{done.stderr}"
