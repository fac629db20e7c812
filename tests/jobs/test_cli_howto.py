"""The background-jobs how-to runs as written: its app, then its shell blocks, in one shell.

Real processes and real time (a worker is a process of its own, and the page's commands are
run by bash as a reader would paste them): a few seconds. The only changes: each long-running
``conveyor worker`` gets ``--until-idle``, and the http block's API is the local mock API.
"""

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conveyor import Job, Jobs
from conveyor.mockapi import MockConfig, run_in_process

from ..http.helpers import write_requests

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "howto" / "run-background-jobs.md"


def _blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", PAGE.read_text(encoding="utf-8"), re.DOTALL)


def _as_run(block: str, base_url: str) -> str:
    """The block with each forever-worker given --until-idle, and OpenAI's URL the mock's."""
    lines = []
    for written in block.replace("\\\n", " ").splitlines():
        command = written.split("#", 1)[0].rstrip()
        forever = command.startswith("conveyor worker") and "--until-idle" not in command
        line = f"{command} --until-idle" if forever else written
        lines.append(line.replace("https://api.openai.com", base_url))
    return "\n".join(lines)


async def _read(store: str) -> tuple[list[Job], list[object]]:
    """The store's jobs, and the results of its `extract` job, read through the public API."""
    async with Jobs(store) as jobs:
        found = await jobs.list()
        [extract] = [job for job in found if job.task == "extract"]
        return found, [item.result async for item in jobs.results(extract.id)]


def test_the_page_has_the_blocks_this_test_runs():
    """The app module first, then the worker, shell and http blocks (what is run below)."""
    assert _blocks("python")[0].startswith("# myproject/jobs.py\n")
    shell = _blocks("sh")
    assert len(shell) == 3
    assert "export CONVEYOR_STORE=sqlite:///jobs.db" in shell[0]
    assert "conveyor jobs submit extract emails.jsonl" in shell[1]
    assert "conveyor jobs submit http requests.jsonl" in shell[2]
    assert "conveyor worker --base-url https://api.openai.com" in shell[2]


def test_the_howto_commands_run_as_written(tmp_path: Path):
    """Worker, submit, ls, watch, show, results, retry, cancel, and an http job: one store."""
    (tmp_path / "myproject").mkdir()
    (tmp_path / "myproject" / "jobs.py").write_text(_blocks("python")[0], encoding="utf-8")
    write_requests(tmp_path / "requests.jsonl", 5)
    shell = _blocks("sh")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    conveyor = bin_dir / "conveyor"
    conveyor.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m conveyor "$@"\n')
    conveyor.chmod(0o755)
    env = {key: value for key, value in os.environ.items() if not key.startswith("CONVEYOR_")}
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        PYTHONPATH=str(ROOT / "src"),
        OPENAI_API_KEY="sk-howto-test",
    )
    with run_in_process(MockConfig(latency_ms=0)) as base_url:
        # Step 2's worker, step 4's session, then the http block: one shell, as a reader's.
        script = "\n".join(_as_run(shell[i], base_url) for i in (0, 1, 2))
        done = subprocess.run(
            ["/bin/bash", "-euo", "pipefail", "-c", script],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "conveyor-jobs.db").exists()  # every command used the one store
    jobs, extracted = asyncio.run(_read(f"sqlite:///{tmp_path / 'jobs.db'}"))
    assert {job.task: (job.status, job.counts.succeeded) for job in jobs} == {
        "extract": ("completed", 2),
        "http": ("completed", 5),
    }
    assert extracted == [{"tracking_number": "1Z999AA10123456784"}, {"tracking_number": None}]
    assert (tmp_path / "failed.jsonl").read_text() == ""
    assert "0 failed item(s) queued again" in done.stdout


if not Path("/bin/bash").exists():  # pragma: no cover - every supported system has it
    pytestmark = pytest.mark.skip(reason="needs /bin/bash to run the page's shell blocks")


@pytest.mark.parametrize(
    "page", ["README.md", "docs/howto/serve-jobs-over-http.md"], ids=lambda p: p.split("/")[-1]
)
def test_every_curl_that_posts_json_says_so(page):
    """A `curl -d '{...}'` without `Content-Type: application/json` gets a 415: none is left."""
    text = (ROOT / page).read_text(encoding="utf-8").replace("\\\n", " ")
    posts = [line for line in text.splitlines() if line.startswith("curl") and " -d " in line]
    assert posts
    for line in posts:
        assert "-H 'Content-Type: application/json'" in line, line


def test_the_task_decorator_takes_the_cost_a_token_limiter_needs():
    """`@app.task(..., cost=fn)`, as the page writes it, registers the cost like add_task."""
    from conveyor import App

    app = App()

    def tokens(item: str) -> int:
        return len(item)

    @app.task("t", cost=tokens)
    async def t(item: str) -> str:
        return item

    task = app.get_task("t")
    assert task is not None
    assert task.cost is tokens
