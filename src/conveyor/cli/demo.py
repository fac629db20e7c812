"""`conveyor demo`: the batch runner against the local mock API, as a user would run it.

It starts the mock API in a process of its own on a free loopback port, with requests and
tokens limits over a strict 1 s window (answered with 429 + ``Retry-After`` when exceeded),
a lognormal latency and a few faults (HTTP 500s, hung requests, dropped connections). It writes
a few thousand chat requests of varied sizes to a JSONL file, runs ``conveyor run`` on it with
the same limits (live progress, then the summary), and ends with one line comparing the run
with the ideal time those limits allow, measured by the API from its first request to its
last answer.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from rich.console import Console

__all__ = ["DemoOptions", "demo_requests", "ideal_line", "run_demo"]

_WORDS = [
    "order",
    "shipment",
    "invoice",
    "refund",
    "customer",
    "tracking",
    "parcel",
    "delayed",
    "address",
    "warehouse",
    "carrier",
    "label",
    "payment",
    "receipt",
    "return",
    "exchange",
    "damaged",
    "item",
    "quantity",
    "delivery",
]


@dataclass(frozen=True, kw_only=True)
class DemoOptions:
    """What the demo runs: the requests, the concurrency, the API's limits and latency."""

    requests: int = 2_000
    concurrency: int = 50
    rpm: float = 7_200.0
    tpm: float = 3_300_000.0
    latency_ms: float = 150.0
    seed: int = 7
    keep: Path | None = None


def demo_requests(count: int, seed: int) -> list[dict[str, Any]]:
    """Return `count` chat requests in the batch format, of seeded, varied sizes."""
    rng = random.Random(seed)
    lines = []
    for i in range(count):
        words = rng.randint(20, 400)
        text = " ".join(rng.choice(_WORDS) for _ in range(words))
        body = {
            "model": "mock-1",
            "messages": [
                {"role": "system", "content": "Extract the tracking number."},
                {"role": "user", "content": text},
            ],
            "max_tokens": rng.choice((16, 32, 64, 128)),
        }
        lines.append(
            {
                "custom_id": f"email-{i:05d}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": body,
            }
        )
    return lines


def ideal_line(
    *, active_s: float, requests_seen: int, retried: int, tokens: float, options: DemoOptions
) -> str:
    """The closing line: the run's time against the least the limits allow for what was sent."""
    from ..policy.ideal import ideal_duration_s

    ideal = ideal_duration_s(
        requests=requests_seen,
        tokens=tokens,
        concurrency=options.concurrency,
        latency_s=options.latency_ms / 1000.0,
        requests_per_minute=options.rpm,
        tokens_per_minute=options.tpm,
        window_s=1.0,
    )
    ratio = active_s / ideal if ideal else 1.0
    return (
        f"Ideal under these limits for the {requests_seen:,} requests the API saw"
        f" ({retried:,} of them retries): {ideal:.2f} s; this run took {active_s:.2f} s from"
        f" its first request to its last answer: {ratio:.3f}x the ideal."
    )


def _number(value: float) -> str:
    """A limit as a user types it: ``3300000``, not ``3.3e+06``."""
    return str(int(value)) if value == int(value) else repr(value)


def _stats(base_url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{base_url}/stats", timeout=10) as answer:  # noqa: S310 - loopback
        stats: dict[str, Any] = json.loads(answer.read())
        return stats


def _run_parser(
    add_arguments: Callable[[argparse.ArgumentParser], None],
) -> argparse.ArgumentParser:
    """``conveyor run``'s own parser (the demo runs that command, nothing else)."""
    parser = argparse.ArgumentParser(prog="conveyor run")
    add_arguments(parser)
    return parser


def run_demo(options: DemoOptions, console: Console | None = None) -> int:
    """Run the demo; return ``conveyor run``'s exit status."""
    from rich.console import Console

    from ..mockapi import Faults, MockConfig, run_in_process
    from .run import run_command
    from .run_args import add_arguments

    console = console or Console(highlight=False)
    faults = Faults(fail_rate=0.02, hang_rate=0.002, drop_rate=0.003, hang_s=30.0)
    config = MockConfig(
        latency_ms=options.latency_ms,
        latency="lognormal",
        latency_sigma=0.3,
        rpm=options.rpm,
        tpm=options.tpm,
        window_s=1.0,
        faults=faults,
        seed=options.seed,
    )
    with tempfile.TemporaryDirectory(prefix="conveyor-demo-") as tmp:
        folder = options.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        requests, results = folder / "requests.jsonl", folder / "results.jsonl"
        summary = folder / "summary.json"
        results.unlink(missing_ok=True)  # a kept folder from an earlier demo: start afresh
        with requests.open("w", encoding="utf-8") as f:
            for line in demo_requests(options.requests, options.seed):
                f.write(json.dumps(line) + "\n")
        with run_in_process(config) as base_url:
            console.print(
                f"The mock API listens on {base_url}: {options.rpm:,.0f} requests and"
                f" {options.tpm:,.0f} tokens per minute, enforced over every 1 s window (429"
                f" beyond), {options.latency_ms:g} ms median latency, 2% HTTP 500s, 0.2% hung"
                " requests, 0.3% dropped connections.",
                soft_wrap=True,
            )
            argv = [
                str(requests),
                "-o",
                str(results),
                "--base-url",
                base_url,
                "--concurrency",
                str(options.concurrency),
                "--rpm",
                _number(options.rpm),
                "--tpm",
                _number(options.tpm),
                "--limit-window",
                "1s",
                "--timeout",
                "auto",
                "--summary-json",
                str(summary),
            ]
            console.print(f"$ conveyor run {' '.join(argv)}", soft_wrap=True, markup=False)
            status = run_command(_run_parser(add_arguments).parse_args(argv), console=console)
            stats = _stats(base_url)
        record = json.loads(summary.read_text(encoding="utf-8"))
        console.print(
            f"The API answered {stats['ok']:,} requests, refused {stats['rate_limited']:,}"
            f" with 429, failed {stats['errors_500']:,} with 500, held {stats['hung']:,}"
            f" hung and dropped {stats['dropped']:,}; the runner retried each of them.",
            soft_wrap=True,
        )
        console.print(
            ideal_line(
                active_s=stats["active_s"],
                requests_seen=stats["requests"],
                retried=stats["requests"] - record["total"],
                tokens=stats["tokens_admitted"],
                options=options,
            ),
            soft_wrap=True,
        )
        if options.keep is not None:
            console.print(f"The requests and results are in {folder}.", soft_wrap=True)
        else:
            console.print(
                "The files were in a temporary folder, removed now; `conveyor demo --keep DIR`"
                " keeps them.",
                soft_wrap=True,
                markup=False,
            )
    return status
