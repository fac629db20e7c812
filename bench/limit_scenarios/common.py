"""What the scenarios share: their results, the run's time budget, the runs against the mock API.

A scenario returns an `Outcome`: one `Row` per contender (the driver prints them as a table)
and the `Check`s its targets make (PASS/FAIL lines). Contenders against the mock API run one
after another in the same mock process, each in a fresh event loop, after the mock's counters
and window are reset and one and a half windows have passed, so none inherits another's load.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp
import tenacity

from conveyor.mockapi import run_in_process

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from conveyor.mockapi import MockConfig

__all__ = [
    "Budget",
    "Check",
    "Contender",
    "Outcome",
    "Row",
    "Scenario",
    "WaitRetryAfter",
    "against_mock",
    "mock_stats",
    "retry_after_of",
]


@dataclass(frozen=True, kw_only=True)
class Row:
    """One contender's run.

    Attributes:
        contender: its name in the table.
        ok: items that settled successfully.
        seconds: wall time from its first call to its last answer (client side).
        pushbacks: refusals the API counted: 429s, or the throttles of a non-HTTP API.
        overloaded: 529s, where the API can answer them (None: not a column here).
        note: why the row is incomplete (a deadline), else empty.
        stats: the mock API's counters after the run, for the JSON output.
    """

    contender: str
    ok: int
    seconds: float
    pushbacks: int
    overloaded: int | None = None
    note: str = ""
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Check:
    """One target: its PASS/FAIL line's text, and whether it was met."""

    text: str
    ok: bool


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """A scenario's results: what ran, its ideal, the rows and the checks."""

    key: str
    title: str
    about: str
    ideal_s: float
    total: int
    rows: list[Row]
    checks: list[Check]
    pushback_label: str = "429s"

    def row(self, contender: str) -> Row:
        """Return the row of `contender`."""
        return next(r for r in self.rows if r.contender == contender)


class Budget:
    """The whole run's time, shared by every contender: no run can go on past it.

    Each contender gets its own deadline, cut to what is left of the budget; once the budget
    is spent, the remaining contenders get none and are reported as not run.
    """

    def __init__(self, total_s: float) -> None:
        self.total_s = total_s
        self.ends_at = time.monotonic() + total_s

    def deadline_s(self, own_s: float) -> float:
        """Return the seconds a contender may run: `own_s`, or what is left if less."""
        return max(0.0, min(own_s, self.ends_at - time.monotonic()))


@dataclass(frozen=True, kw_only=True)
class Scenario:
    """An entry of the registry: a key for ``--only``, a title, and how to run it.

    A scenario whose parts do not exist yet has no `run` and says why in `pending`.
    """

    key: str
    title: str
    run: Callable[[Budget], Outcome] | None = None
    pending: str = ""


def retry_after_of(exc: BaseException, *, precise: bool = False) -> float | None:
    """Return the server's Retry-After in seconds, if the error carries one.

    Reads the headers of an ``HttpError`` (``exc.headers``) or of an ``openai`` error
    (``exc.response.headers``). `precise` prefers OpenAI's ``retry-after-ms`` to the whole
    seconds of ``Retry-After``.
    """
    headers = getattr(exc, "headers", None)
    if headers is None:
        headers = getattr(getattr(exc, "response", None), "headers", None) or {}
    if precise:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return float(ms) / 1000.0
    value = headers.get("Retry-After") or headers.get("retry-after")
    return float(value) if value is not None else None


class WaitRetryAfter(tenacity.wait.wait_base):
    """tenacity wait: the server's Retry-After when it gives one, else exponential backoff."""

    def __init__(self, *, precise: bool = False) -> None:
        self.precise = precise
        self.fallback = tenacity.wait_exponential(multiplier=0.05, max=1.0)

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        hint = retry_after_of(exc, precise=self.precise) if exc is not None else None
        return hint if hint is not None else float(self.fallback(retry_state))


async def mock_stats(base_url: str, *, reset: bool = False) -> dict[str, Any]:
    """Return the mock API's counters (``GET /stats``), after zeroing them if `reset`."""
    async with aiohttp.ClientSession() as session:
        if reset:
            async with session.post(f"{base_url}/stats/reset") as r:
                await r.read()
        async with session.get(f"{base_url}/stats") as r:
            result: dict[str, Any] = await r.json()
            return result


#: A contender against the mock: its name, and a coroutine function of the base URL that
#: returns how many items settled successfully.
Contender = tuple[str, "Callable[[str], Awaitable[int]]"]


def against_mock(
    config: MockConfig, contenders: Sequence[Contender], *, deadline_s: float, budget: Budget
) -> list[Row]:
    """Run each contender against one mock API process with `config`; one row each."""
    with run_in_process(config) as base_url:
        return [
            asyncio.run(
                _measure(name, run, base_url, config.window_s, budget.deadline_s(deadline_s))
            )
            for name, run in contenders
        ]


async def _measure(
    name: str,
    run: Callable[[str], Awaitable[int]],
    base_url: str,
    window_s: float,
    deadline_s: float,
) -> Row:
    await mock_stats(base_url, reset=True)
    # The mock's window must be empty when a contender starts: wait out the last one's window.
    await asyncio.sleep(window_s * 1.5)
    started = time.perf_counter()
    ok: int | None = None
    note = ""
    if deadline_s <= 0:
        note = "not run: the run's time budget is spent"
    else:
        timeout = asyncio.timeout(deadline_s)
        try:
            async with timeout:
                ok = await run(base_url)
        except TimeoutError:
            if not timeout.expired():
                raise
            note = f"stopped at its {deadline_s:.0f} s deadline"
    elapsed = time.perf_counter() - started
    stats = await mock_stats(base_url)
    if ok is None:  # cut short: what the mock answered 200, each item once
        ok = int(stats["ok"] - stats["duplicates_after_success"])
    return Row(
        contender=name,
        ok=ok,
        seconds=elapsed,
        pushbacks=int(stats["rate_limited"]),
        note=note,
        stats=stats,
    )
