"""The app the fault tests' worker and service processes run.

`work` logs every execution to a side file (never behind the proxy, so that executions are
counted whatever the store does), takes a slot of a shared limiter (in Redis with
``--limits``: the Redis outage test cuts it), and sleeps a moment. The limiter's name comes
from the environment so that concurrent test runs never share a budget.
"""

import asyncio
import os

from conveyor.jobs import App
from conveyor.limits.limiter import Limiter

LIMITER = os.environ.get("CONVEYOR_TEST_LIMITER", "faults-test")

app = App(limiters=[Limiter(LIMITER, concurrency=200)])


@app.task("work", limiters=[LIMITER])
async def work(n, ctx):
    # One line per execution, appended atomically (O_APPEND, one write).
    fd = os.open(os.environ["CONVEYOR_TEST_RUNS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{ctx.index} {os.getpid()}\n".encode())
    finally:
        os.close(fd)
    await asyncio.sleep(float(os.environ.get("CONVEYOR_TEST_ITEM_S", "0.002")))
    return n * 2
