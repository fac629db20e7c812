"""The app run by worker processes in the crash tests: it logs every execution to a side file."""

import asyncio
import os

from conveyor.jobs import App

app = App()


@app.task("work")
async def work(n, ctx):
    # One line per execution, appended atomically (O_APPEND, one write), so a kill -9 at any
    # moment leaves whole lines.
    path = os.environ["CONVEYOR_TEST_RUNS"]
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{ctx.index}\n".encode())
    finally:
        os.close(fd)
    await asyncio.sleep(0.02)
    return n * 2
