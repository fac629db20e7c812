"""The scenarios of bench/limits.py, one module per family, and their registry.

``SCENARIOS`` is the registry, in the order ``python bench/limits.py`` runs them; ``--only``
selects by key. A scenario is added by writing a module that returns an `Outcome` (see
common.py) and listing its `Scenario` here; one whose parts do not exist yet may be listed
with `Scenario.pending` instead of a run (printed as SKIP with the reason).
"""

from __future__ import annotations

from . import anthropic_buckets, chat_costs, shared_redis, slow_answers, throttles
from .common import Budget, Outcome, Scenario

__all__ = ["SCENARIOS", "Budget", "Outcome", "Scenario"]

SCENARIOS: list[Scenario] = [
    *chat_costs.SCENARIOS,  # a, faults, hangs
    *slow_answers.SCENARIOS,  # b, c
    anthropic_buckets.SCENARIO,  # d
    throttles.SCENARIO,  # e
    shared_redis.SCENARIO,  # f
]
