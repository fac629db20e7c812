"""What observing a worker costs: items settled per second with no observer, spans, metrics.

One job of no-op items on the SQLite store, run to the end by an in-process `Worker`, four
ways in one run (each on a fresh file, the order rotated over the rounds):

- ``none``: ``observers=[]``;
- ``spans``: the default with ``opentelemetry-api`` installed and no SDK set up (the API's
  no-op spans: what a worker pays when tracing is not configured);
- ``metrics``: the Prometheus counters and histograms (`conveyor.metrics`);
- ``both``: metrics and spans (``Metrics.observers()``);
- ``sdk``: spans recorded by the OpenTelemetry SDK (a provider with no exporter: the cost of
  making them, not of sending them), if the SDK is installed.

Prints items/s per way (the best of the rounds) and the ratio to ``none``.
``python bench/observers.py [--items N] [--rounds R]``.
"""

from __future__ import annotations

import os
import sys

# Run as a script, this folder comes first on sys.path, and its http.py would shadow the
# standard library's `http` (which aiohttp imports). Take the folder off the path.
_HERE = os.path.dirname(os.path.abspath(__file__))  # noqa: PTH100, PTH120 - before any import
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]  # noqa: PTH100

import argparse
import asyncio
import importlib.util
import tempfile
import time
from pathlib import Path
from typing import Any

from conveyor.jobs import App, JobObserver, Jobs, SqliteStore, Worker, WorkerOptions
from conveyor.jobs.tracing import Tracing, tracing_available
from conveyor.metrics import Metrics

app = App()


@app.task("noop")
async def noop(item: Any) -> Any:
    return item


def _observers(way: str) -> list[JobObserver]:
    metrics = Metrics(app=app)
    spans: list[JobObserver] = [Tracing()] if tracing_available() else []
    if way == "sdk":
        from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415 - optional

        return [Tracing(tracer_provider=TracerProvider())]
    ways: dict[str, list[JobObserver]] = {
        "none": [],
        "spans": spans,
        "metrics": [metrics.observer],
        "both": [*spans, metrics.observer],
    }
    return ways[way]


async def _run(db: Path, n: int, way: str) -> float:
    store = SqliteStore(db)
    try:
        await Jobs(store, app=app).submit("noop", range(n), concurrency=200)
        options = WorkerOptions(claim_size=2000, batch_size=2000)
        worker = Worker(store, app, options=options, observers=_observers(way))
        started = time.perf_counter()
        await asyncio.wait_for(worker.run(until_idle=True), timeout=600)
        return n / (time.perf_counter() - started)
    finally:
        await store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    ways = ["none", "spans", "metrics", "both"]
    if importlib.util.find_spec("opentelemetry.sdk") is not None:
        ways.append("sdk")
    if not tracing_available():
        print("opentelemetry-api is not installed: 'spans' is the same as 'none'")
    best = dict.fromkeys(ways, 0.0)
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for i in range(len(ways)):
                way = ways[(i + r) % len(ways)]
                rate = asyncio.run(_run(Path(tmp) / f"{way}-{r}.db", args.items, way))
                best[way] = max(best[way], rate)
    print(f"{args.items:,} no-op items, best of {args.rounds} rounds")
    for way in ways:
        print(f"  {way:8} {best[way]:10,.0f} items/s   {best[way] / best['none']:.2f}x none")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
