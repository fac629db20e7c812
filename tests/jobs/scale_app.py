"""The app run by worker processes in the scale-out tests (PostgreSQL store, Redis limits).

`work` logs every execution to a side file, then takes a slot of the shared limiter, whose
name comes from the environment so that concurrent test runs never share a budget. `steps`
reports three steps, a moment apart, for the SSE test.
"""

import asyncio
import os

from conveyor.jobs import App
from conveyor.limits.limiter import Limiter

LIMITER = os.environ.get("CONVEYOR_TEST_LIMITER", "scale-test")
#: Calls in flight at most, all workers together.
CONCURRENCY = 8

app = App(limiters=[Limiter(LIMITER, concurrency=CONCURRENCY)])


@app.task("work", limiters=[LIMITER])
async def work(n, ctx):
    # One line per execution, appended atomically (O_APPEND, one write): a kill -9 at any
    # moment leaves whole lines.
    fd = os.open(os.environ["CONVEYOR_TEST_RUNS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{ctx.index} {os.getpid()}\n".encode())
    finally:
        os.close(fd)
    await asyncio.sleep(float(os.environ.get("CONVEYOR_TEST_ITEM_S", "0.02")))
    return n * 2


@app.task("steps")
async def steps(n, ctx):
    for percent, step in ((10, "discover"), (50, "match"), (90, "analyse")):
        ctx.progress(percent, step)
        await asyncio.sleep(0.3)
    return n
