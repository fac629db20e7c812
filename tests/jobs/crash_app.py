"""The app run by worker processes in the crash tests: it logs every execution to a side file."""

import asyncio
import os

from conveyor.jobs import App

app = App()


@app.task("work")
async def work(n, ctx):
    # One line per execution, appended atomically (O_APPEND, one write), so a kill -9 at any
    # moment leaves whole lines.
    _log(os.environ["CONVEYOR_TEST_RUNS"], ctx.index)
    await asyncio.sleep(float(os.environ.get("CONVEYOR_TEST_ITEM_S", "0.02")))
    done = os.environ.get("CONVEYOR_TEST_DONE")
    if done:  # the call succeeded: from here on, only its result is not yet written
        _log(done, ctx.index)
    return n * 2


def _log(path: str, index: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{index}\n".encode())
    finally:
        os.close(fd)
