"""The Claude route's driver: every contender against one mock API, the table, the targets.

Contenders run one after another against the same mock process (its counters and buckets reset,
then 1.5 s, before each), and are timed the way the OpenAI route times them: by the mock, from
the first request to the last answer (``active_s`` of ``/stats``), so nobody's start-up counts.

Targets (the issue's), for each of Conveyor's three ways: no 429, every request answered, at
least 0.9 of the ideal. A way not in this tree yet is listed as PENDING, and the run exits 1
until all nine targets pass. Every contender that answered the whole work is also checked to
have been charged exactly the work's tokens: the input of the answered requests and 7 output
tokens an answer, whatever shape its client gave the body.
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

from conveyor.mockapi import MockConfig, run_in_process
from conveyor.mockapi.config import AnthropicLimits

from .contenders import (
    NotAvailableYet,
    run_conveyor_run,
    run_limit_anthropic,
    run_message_batches,
    run_sdk_semaphore,
)
from .peers import CURATOR_SCRIPT, LITELLM_SCRIPT, run_peer, write_work
from .work import (
    BURST_S,
    CONCURRENCY,
    ITPM,
    LATENCY_MS,
    OTPM,
    OUTPUT_TOKENS,
    OVERLOADED,
    RPM,
    N,
    ideal_s,
    input_tokens,
    make_work,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from .work import Request

    #: A contender run here: a coroutine function of the mock's URL, the work and a scratch
    #: folder, returning how many requests were answered.
    Run = Callable[[str, list[Request], Path], Awaitable[int]]

__all__ = ["Row", "checks", "main", "mock_config", "table"]

DEADLINE_S = 180.0  # one contender's bound here: over 6x the ideal
PEER_TIMEOUT_S = 300.0  # a peer's whole run, its start-up included
TARGET_SHARE = 0.9

#: Conveyor's three ways, each judged against the targets.
CONVEYOR: tuple[tuple[str, Run], ...] = (
    ("conveyor run", run_conveyor_run),
    ("conveyor limit_anthropic", run_limit_anthropic),
    ("conveyor Message Batches", run_message_batches),
)
BASELINE: tuple[str, Run] = ("AsyncAnthropic+Semaphore(50)", run_sdk_semaphore)
PEERS = (("bespokelabs-curator", CURATOR_SCRIPT), ("litellm Router", LITELLM_SCRIPT))


@dataclass(frozen=True, kw_only=True)
class Row:
    """One contender's run: what it answered, what the mock counted, why it is incomplete."""

    contender: str
    ok: int | None
    stats: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    available: bool = True

    @property
    def seconds(self) -> float:
        """Return the mock's measure: from the first request to the last answer."""
        return float(self.stats.get("active_s", 0.0))


def mock_config() -> MockConfig:
    """Return the mock API of the route: Anthropic's token buckets, 3% 529s, 400 ms answers."""
    return MockConfig(
        latency_ms=LATENCY_MS,
        latency="fixed",
        window_s=1.0,
        anthropic=AnthropicLimits(
            rpm=RPM, itpm=ITPM, otpm=OTPM, burst_s=BURST_S, overloaded_rate=OVERLOADED
        ),
        seed=5,
    )


async def _stats(base: str, *, reset: bool = False) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        if reset:
            async with session.post(f"{base}/stats/reset") as r:
                await r.read()
        async with session.get(f"{base}/stats") as r:
            result: dict[str, Any] = await r.json()
            return result


async def _fresh(base: str) -> None:
    await _stats(base, reset=True)
    await asyncio.sleep(1.5 * BURST_S)  # every bucket full again


async def _warm_up(base: str) -> None:
    """Answer a few calls before anyone is measured: a new process stamps its first ones late."""
    body = {"model": "warm-up", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    async with aiohttp.ClientSession() as session:
        for _ in range(3):
            async with session.post(f"{base}/v1/messages", json=body) as r:
                await r.read()


def _measure_here(name: str, run: Run, base: str, work: list[Request], tmp: Path) -> Row:
    asyncio.run(_fresh(base))

    async def bounded() -> int:
        async with asyncio.timeout(DEADLINE_S):
            return await run(base, work, tmp)

    note = ""
    ok: int | None = None
    try:
        ok = asyncio.run(bounded())
    except NotAvailableYet as exc:
        return Row(contender=name, ok=None, note=f"not available yet: {exc}", available=False)
    except TimeoutError:
        note = f"stopped at its {DEADLINE_S:g} s deadline"
    return Row(contender=name, ok=ok, stats=asyncio.run(_stats(base)), note=note)


def _measure_peer(name: str, script: str, python: str, base: str, work_path: Path) -> Row:
    home = work_path.parent / name.split(maxsplit=1)[0]
    run = run_peer(
        python, script, base=base, work_path=work_path, home=home, timeout_s=PEER_TIMEOUT_S
    )
    notes = [f"wall {run.wall_s:.1f} s with start-up, exit {run.returncode}"]
    if run.returncode is None:
        notes[0] = f"stopped at its {PEER_TIMEOUT_S:g} s deadline"
    notes.append("outside 127.0.0.1: " + (", ".join(run.blocked) or "nothing tried"))
    if run.errors:
        notes.append("final errors: " + ", ".join(run.errors))
    if run.ok is None:
        notes.extend(run.tail)
    return Row(contender=name, ok=run.ok, stats=asyncio.run(_stats(base)), note="; ".join(notes))


def table(rows: list[Row], ideal: float) -> list[str]:
    """Return the table: one line per contender, its share of the ideal time among them."""
    width = max(30, *(len(r.contender) for r in rows))
    lines = [
        (
            f"{'contender':<{width}} {'ok':>5} {'seconds':>8} {'of ideal':>9} {'429s':>5}"
            f" {'529s':>5} {'sent':>5}"
        )
    ]
    for r in rows:
        if not r.available:
            lines.append(f"{r.contender:<{width}} not available yet")
            continue
        s = r.stats
        share = f"{ideal / r.seconds:.3f}" if r.seconds else "-"
        ok = "-" if r.ok is None else str(r.ok)
        lines.append(
            f"{r.contender:<{width}} {ok:>5} {r.seconds:>8.2f} {share:>9} {s['rate_limited']:>5}"
            f" {s['overloaded']:>5} {s['requests']:>5}"
        )
    return lines


def checks(rows: list[Row], work: list[Request]) -> list[tuple[str, str]]:
    """Return the verdict lines: ``(PASS|FAIL|PENDING, text)``, Conveyor's targets first."""
    ideal = ideal_s(work)
    out: list[tuple[str, str]] = []
    ours = {name for name, _ in CONVEYOR}
    for r in rows:
        if r.contender not in ours:
            continue
        if not r.available:
            out.append(("PENDING", f"{r.contender}: {r.note}"))
            continue
        share = ideal / r.seconds if r.seconds else 0.0
        limited = r.stats["rate_limited"]
        out += [
            (_verdict(limited == 0), f"{r.contender}: 429s = {limited} (target 0)"),
            (_verdict(r.ok == len(work)), f"{r.contender}: {r.ok} of {len(work)} answered"),
            (
                _verdict(share >= TARGET_SHARE),
                f"{r.contender}: {share:.3f} of the ideal (target >= {TARGET_SHARE})",
            ),
        ]
    inputs = sum(input_tokens(r) for r in work)
    outputs = OUTPUT_TOKENS * len(work)
    for r in rows:
        if r.available and r.stats.get("ok") == len(work):
            charged_in = r.stats["spent_tokens"] - r.stats["messages_output_tokens"]
            charged_out = r.stats["messages_output_tokens"]
            out.append(
                (
                    _verdict(charged_in == inputs and charged_out == outputs),
                    (
                        f"{r.contender}: charged {charged_in:,} input and {charged_out:,} output"
                        f" tokens for its answers (the work: {inputs:,} and {outputs:,})"
                    ),
                )
            )
    return out


def _verdict(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


def main(*, n: int | None = None, peers_python: str | None = None) -> int:
    """Run the route (`n` requests, default `N`); print the table and verdicts; 0 if all passed."""
    n = N if n is None else n
    work = make_work(n)
    ideal = ideal_s(work)
    inputs = sum(input_tokens(r) for r in work)
    print(
        f"{n:,} Messages requests: {inputs:,} input tokens (mean {inputs / n:.0f}),"
        f" {OUTPUT_TOKENS} output tokens an answer; token buckets of {BURST_S:g} s:"
        f" {RPM:,} rpm, {ITPM:,} input and {OTPM:,} output tokens a minute;"
        f" {OVERLOADED:.0%} 529s; {LATENCY_MS:g} ms latency; concurrency {CONCURRENCY}"
    )
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp_name, run_in_process(mock_config()) as base:
        tmp = Path(tmp_name)
        asyncio.run(_warm_up(base))
        for name, run in (*CONVEYOR, BASELINE):
            rows.append(_measure_here(name, run, base, work, tmp))
        if peers_python:
            work_path = write_work(work, tmp / "work.jsonl")
            for name, script in PEERS:
                rows.append(_measure_peer(name, script, peers_python, base, work_path))
    print(f"\nideal max(N / rpm, input / itpm, output / otpm) + latency: {ideal:.2f} s")
    print("\n".join(table(rows, ideal)))
    print()
    for r in rows:
        if r.note and r.available:
            print(f"{r.contender}: {r.note}")
    if not peers_python:
        print("peers (Curator, LiteLLM): not run (pass --peers-python PATH)")
    verdicts = checks(rows, work)
    print()
    for verdict, text in verdicts:
        print(f"{verdict}: {text}")
    return 0 if all(v == "PASS" for v, _ in verdicts) else 1
