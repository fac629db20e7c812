"""The examples of the how-to pages run as written: each Python block is a whole program."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
#: Pages whose every Python block is a complete program (the others show fragments).
RUNNABLE = ["howto/dynamodb-bulk-writes.md", "howto/limit-claude.md"]


def _blocks() -> list[tuple[str, int, str]]:
    found = []
    for page in RUNNABLE:
        text = (DOCS / page).read_text(encoding="utf-8")
        for number, code in enumerate(re.findall(r"```python\n(.*?)```", text, re.DOTALL), 1):
            found.append((page, number, code))
    return found


@pytest.mark.parametrize(("page", "number", "code"), _blocks(), ids=lambda v: str(v)[:40])
def test_the_example_runs_as_written(page, number, code, tmp_path):
    """Run the block in a fresh interpreter; it must exit 0 (its own asserts included)."""
    script = tmp_path / "example.py"
    script.write_text(code, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, f"{page} block {number}:\n{done.stdout}\n{done.stderr}"
