"""The scenarios of bench/limits.py, one module per family, and their registry.

``SCENARIOS`` is the registry, in the order ``python bench/limits.py`` runs them; ``--only``
selects by key. A scenario is added by writing a module that returns an `Outcome` (see
common.py) and listing its `Scenario` here. Two are registered without a run because what they
measure does not exist yet; when it does, each becomes a module like the others:

- (d) Anthropic's token buckets: needs the mock API's Anthropic route (``/v1/messages``, its
  ``anthropic-ratelimit-*`` headers, 529 overloaded; the table then shows a 529s column, see
  `Row.overloaded`) and the limiter's token-bucket kind.
- (f) 4 workers sharing one limit through Redis: needs the same token-bucket kind in the
  Redis limiter.
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
