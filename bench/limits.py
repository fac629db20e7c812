"""Rate limits and throttles: Conveyor and its peers side by side, scenario by scenario.

``python bench/limits.py`` runs every scenario of bench/limit_scenarios/ (its ``__init__``
is the registry and says what each is); ``--only b,c`` runs some. Each prints a table
(contender | settled ok | seconds | x ideal | 429s), then every target is a PASS or FAIL line,
and the exit status is 1 if any FAILs. Scenarios whose parts do not exist yet are listed as
SKIP with the reason.

- (a) 500 chat requests, costs 10-390, both limits binding over a strict 1 s window (aiohttp);
  "faults" and "hangs", the same work with 500s and hangs, and without a limit;
- (b) 120 slow answers (2.5 s) through the ``openai`` client, 500 rpm / 200k tpm;
- (c) the same, every contender told limits 20% above what the mock enforces;
- (d) Anthropic token buckets (1 s), separate input and output token limits, 3% 529s, on the
  mock API's Messages route;
- (e) a DynamoDB-style table throttling above 40 writes/s (botocore-shaped errors);
- (f) (d)'s work split across 4 worker processes sharing one limiter through Redis.

Each ideal is a lower bound the limits allow (bench/limit_scenarios/ideal.py derives them).
Every contender has a deadline, and the whole run a time budget (``--budget-s``), so the run
ends in bounded time even when a contender stalls; about 9 minutes on 2 cores.
"""

from __future__ import annotations

import os
import sys

# Run as a script, this folder comes first on sys.path, and its http.py would shadow the
# standard library's `http` (which aiohttp imports). Take the folder off the path.
_HERE = os.path.dirname(os.path.abspath(__file__))  # noqa: PTH100, PTH120 - before any import
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]  # noqa: PTH100

import argparse
import dataclasses
import importlib.util
import json
from pathlib import Path
from typing import Any


def _load_scenarios() -> None:
    """Import bench/limit_scenarios as the package ``limit_scenarios``, found by its location.

    This folder is off sys.path (above), so the package cannot be found by name; registered
    here, its modules import one another relatively, and ``import limit_scenarios.x`` works.
    """
    if "limit_scenarios" in sys.modules:
        return
    init = Path(_HERE) / "limit_scenarios" / "__init__.py"
    spec = importlib.util.spec_from_file_location(
        "limit_scenarios", init, submodule_search_locations=[str(init.parent)]
    )
    assert spec is not None
    assert spec.loader is not None
    package = importlib.util.module_from_spec(spec)
    sys.modules["limit_scenarios"] = package
    spec.loader.exec_module(package)


_load_scenarios()

from limit_scenarios import SCENARIOS, Budget, Outcome

# bench/http.py loads this file and reuses scenario (a)'s work and limits through these names.
from limit_scenarios.chat_costs import CONCURRENCY, LATENCY_MS, RPM, TPM, ideal_s, make_requests

__all__ = ["CONCURRENCY", "LATENCY_MS", "RPM", "TPM", "ideal_s", "main", "make_requests"]

BUDGET_S = 540.0  # the whole run's bound: 9 minutes


def table(outcome: Outcome) -> list[str]:
    """Return a scenario's table: a heading, what ran, one line per contender."""
    width = max(22, *(len(r.contender) for r in outcome.rows))
    label = outcome.pushback_label
    with_529s = any(r.overloaded is not None for r in outcome.rows)
    head = f"{'contender':<{width}} {'settled ok':>10} {'seconds':>8} {'x ideal':>8} {label:>9}"
    lines = [
        f"scenario {outcome.title}; ideal {outcome.ideal_s:.2f} s",
        outcome.about,
        head + (f" {'529s':>6}" if with_529s else ""),
    ]
    for r in outcome.rows:
        line = (
            f"{r.contender:<{width}} {r.ok:>10} {r.seconds:>8.2f}"
            f" {r.seconds / outcome.ideal_s:>8.3f} {r.pushbacks:>9}"
        )
        if with_529s:
            line += f" {'-' if r.overloaded is None else r.overloaded:>6}"
        if r.note:
            line += f"  ({r.note})"
        lines.append(line)
    return lines


def _selected(only: str | None) -> list[str]:
    keys = [s.key for s in SCENARIOS]
    if only is None:
        return keys
    chosen = [k.strip() for k in only.split(",") if k.strip()]
    unknown = [k for k in chosen if k not in keys]
    if unknown or not chosen:
        msg = f"--only {only!r}: pick from {', '.join(keys)} (comma-separated, e.g. --only b,c)"
        raise SystemExit(msg)
    return [k for k in keys if k in chosen]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated scenario keys, e.g. b,c (default: all)")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument(
        "--budget-s", type=float, default=BUDGET_S, help="the whole run's time bound, in seconds"
    )
    args = parser.parse_args()
    keys = _selected(args.only)
    budget = Budget(args.budget_s)
    outcomes: list[Outcome] = []
    skipped: list[str] = []
    for scenario in SCENARIOS:
        if scenario.key not in keys:
            continue
        if scenario.run is None:
            skipped.append(f"SKIP  {scenario.title}: not yet, {scenario.pending}")
            continue
        outcome = scenario.run(budget)
        outcomes.append(outcome)
        print("\n".join(table(outcome)), end="\n\n", flush=True)
    checks = [c for o in outcomes for c in o.checks]
    for check in checks:
        print(("PASS  " if check.ok else "FAIL  ") + check.text)
    for line in skipped:
        print(line)
    if args.json:
        everything: dict[str, Any] = {o.key: dataclasses.asdict(o) for o in outcomes}
        Path(args.json).write_text(json.dumps(everything, indent=2), encoding="utf-8")
    return 0 if all(c.ok for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
