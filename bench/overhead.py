"""Engine overhead: a million no-op async items at concurrency 1,000, side by side.

Each contender runs in a process of its own, so the peak memory it reports (the process's
peak RSS) is its own. The rounds are interleaved (every contender once, then again) and each
contender's best round counts, as `timeit` does: a shared 2-core machine is noisy, and the
best round is the one least disturbed by its neighbours. Run it with ``make bench``.

The targets (issue "engine"): conveyor.stream >= 8x the items/s of gather+Semaphore and >= 5x
aiometer, with peak memory under 80 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import resource
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

import aiometer

import conveyor

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine


async def noop(x: int) -> int:
    return x


async def run_conveyor_stream(n: int, c: int) -> int:
    count = 0
    async for _ in conveyor.stream(noop, range(n), concurrency=c):
        count += 1
    return count


async def run_conveyor_map(n: int, c: int) -> int:
    report = await conveyor.map(noop, range(n), concurrency=c)
    return len(report)


async def run_gather_semaphore(n: int, c: int) -> int:
    sem = asyncio.Semaphore(c)

    async def one(x: int) -> int:
        async with sem:
            return await noop(x)

    return len(await asyncio.gather(*(one(i) for i in range(n))))


async def run_aiometer(n: int, c: int) -> int:
    count = 0
    async with aiometer.amap(noop, range(n), max_at_once=c) as results:
        async for _ in results:
            count += 1
    return count


CONTENDERS: dict[str, Callable[[int, int], Coroutine[Any, Any, int]]] = {
    "conveyor.stream": run_conveyor_stream,
    "gather+Semaphore": run_gather_semaphore,
    "aiometer": run_aiometer,
    "conveyor.map": run_conveyor_map,
}


def measure_here(name: str, n: int, c: int) -> dict[str, Any]:
    started = time.perf_counter()
    done = asyncio.run(CONTENDERS[name](n, c))
    took = time.perf_counter() - started
    assert done == n, f"{name} settled {done} of {n}"
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"name": name, "items_per_s": n / took, "seconds": took, "peak_mb": peak_mb}


def measure(name: str, n: int, c: int) -> dict[str, Any]:
    out = subprocess.run(  # noqa: S603 - runs this very file
        [sys.executable, __file__, "--one", name, "--items", str(n), "--concurrency", str(c)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, Any] = json.loads(out)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--concurrency", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the best counts")
    parser.add_argument("--one", choices=sorted(CONTENDERS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure_here(args.one, args.items, args.concurrency)))
        return 0

    print(
        f"{args.items:,} no-op async items, concurrency {args.concurrency:,};"
        f" Python {platform.python_version()}; one process each, best of {args.rounds} rounds"
    )
    results: dict[str, dict[str, Any]] = {}
    for _ in range(args.rounds):
        for name in CONTENDERS:
            r = measure(name, args.items, args.concurrency)
            if name not in results or r["items_per_s"] > results[name]["items_per_s"]:
                results[name] = r
    ours = results["conveyor.stream"]["items_per_s"]
    header = f"{'contender':<18} {'items/s':>12} {'seconds':>9} {'peak MB':>9}"
    print(f"{header} {'conveyor.stream is':>20}")
    for name, r in results.items():
        ratio = ours / r["items_per_s"]
        print(
            f"{name:<18} {r['items_per_s']:>12,.0f} {r['seconds']:>9.2f} {r['peak_mb']:>9.1f}"
            f" {ratio:>19.2f}x"
        )
    vs_gather = ours / results["gather+Semaphore"]["items_per_s"]
    vs_aiometer = ours / results["aiometer"]["items_per_s"]
    peak = results["conveyor.stream"]["peak_mb"]
    checks = [
        (f"conveyor.stream vs gather+Semaphore: {vs_gather:.1f}x (target >= 8x)", vs_gather >= 8),
        (f"conveyor.stream vs aiometer: {vs_aiometer:.1f}x (target >= 5x)", vs_aiometer >= 5),
        (f"conveyor.stream peak memory: {peak:.0f} MB (target < 80 MB)", peak < 80),
    ]
    for text, ok in checks:
        print(("PASS  " if ok else "FAIL  ") + text)
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
