"""What the fault tests share: Conveyor processes with their output in files, direct SQL.

Each process writes its stdout and stderr to files, so a test can read what it logged while
it runs (a pipe nobody reads would fill and block it) and show the end of it when it fails.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

ROOT = Path(__file__).resolve().parents[2]
#: The end of a process's output shown when a test fails on it, in characters.
TAIL_CHARS = 3000


class Proc:
    """A ``python -m conveyor ...`` process whose output goes to files in `folder`."""

    def __init__(self, name: str, args: Sequence[str], env: dict[str, str], folder: Path) -> None:
        self.name = name
        self.out, self.err = folder / f"{name}.out", folder / f"{name}.err"
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "conveyor", *args],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=err,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        """Everything it printed so far, stdout then stderr."""
        return self.out.read_text(errors="replace") + self.err.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def tail(self) -> str:
        return self.output()[-TAIL_CHARS:]

    def assert_alive(self, when: str) -> None:
        """Fail, with the end of its output, if it has exited."""
        rc = self.popen.poll()
        if rc is not None:
            pytest.fail(f"{self.name} exited (rc={rc}) {when}; its output ends:\n{self.tail()}")

    def stop(self, timeout_s: float = 30) -> int:
        """SIGTERM, and its exit code (killed after `timeout_s`: then a failure)."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"{self.name} did not stop within {timeout_s}s of SIGTERM:\n{self.tail()}")

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait(10)


def env(runs: Path, limiter: str, **extra: str) -> dict[str, str]:
    """The environment of the fault app's processes (`tests.faults.fault_app`)."""
    return {
        **os.environ,
        "CONVEYOR_TEST_RUNS": str(runs),
        "CONVEYOR_TEST_LIMITER": limiter,
        **extra,
    }


def runs(path: Path) -> Counter[int]:
    """Executions per item index, from the fault app's side file."""
    if not path.exists():
        return Counter()
    return Counter(int(line.split()[0]) for line in path.read_text().splitlines() if line)


async def _query(store: str, sql: str, *args: object) -> list[tuple[object, ...]]:
    import asyncpg

    from conveyor.jobs.stores.postgres_schema import split_url

    dsn, schema = split_url(store)
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema or "public"})
    try:
        return [tuple(r) for r in await conn.fetch(sql, *args)]
    finally:
        await conn.close()


def sql(store: str, query: str, *args: object) -> list[tuple[object, ...]]:
    """Rows of `query` on the store's schema, straight to PostgreSQL (never via a proxy)."""
    return asyncio.run(_query(store, query, *args))


def submit(store: str, items: Sequence[object], concurrency: int, task: str = "work") -> str:
    """Submit a job straight to the store; its id."""
    from conveyor.jobs import Jobs

    async def main() -> str:
        async with Jobs(store) as jobs:
            return (await jobs.submit(task, items, concurrency=concurrency)).id

    return asyncio.run(main())


def wait_until(
    what: str,
    done: Callable[[], bool],
    deadline_s: float,
    alive: Sequence[Proc] = (),
    every_s: float = 0.05,
) -> None:
    """Poll `done` until true; fail after `deadline_s`, or as soon as a process of `alive` exits."""
    end = time.monotonic() + deadline_s
    while True:
        for p in alive:
            p.assert_alive(f"while waiting for {what}")
        if done():
            return
        if time.monotonic() > end:
            tails = "".join(f"\n--- {p.name}:\n{p.tail()}" for p in alive)
            pytest.fail(f"not within {deadline_s}s: {what}{tails}")
        time.sleep(every_s)


def hold(seconds: float, alive: Sequence[Proc], what: str) -> None:
    """Let `seconds` pass (an outage lasting), failing as soon as a process of `alive` exits."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for p in alive:
            p.assert_alive(what)
        time.sleep(0.1)
