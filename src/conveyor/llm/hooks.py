"""What the HTTP task does with an LLM answer: count its spend, check it, cache it.

`LlmOptions` is what a run is told (frozen, checked when made); `AnswerHooks` is what the HTTP
task calls with every successful answer, in this order:

1. count the tokens in and out and their cost (an answer that fails the check still cost);
2. run the check (`AnswerCheck` or any function of the body): `InvalidAnswer` fails the attempt
   with its reason, and the retry policy retries it;
3. store it in the response cache, if there is one: only answers that passed get there, and
   only as `conveyor.llm.scoped_cache.ScopedCache` stores them (scoped, redacted).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import ConfigError, InvalidAnswer
from ..policy.retry import check_callable
from .pricing import PriceTable, usage_of
from .scoped_cache import ScopedCache

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from pathlib import Path

    from ..wire.redact import Redactor
    from ..wire.response import Response
    from .cache import AnswerCache

__all__ = ["AnswerHooks", "LlmOptions", "SpendCounts"]


@dataclass(frozen=True, slots=True)
class _Sent:
    """The parts of a request a cache key covers (`ScopedCache.keep_answer` reads them)."""

    method: str
    url: str
    body: bytes | None


class SpendCounts(Protocol):
    """Where `AnswerHooks` counts what the answers used (a run's `conveyor.http.BatchTally`)."""

    tokens_in: int
    tokens_out: int
    cost_usd: float
    unpriced: int


@dataclass(frozen=True, kw_only=True, slots=True)
class LlmOptions:
    """The LLM side of a run.

    Args:
        validate: called with each successful answer's body; raises `InvalidAnswer` to fail it
            (retryable). `AnswerCheck(finish_reasons=frozenset({"stop"}), json=True)` checks
            what ``--require-finish-reason`` and ``--require-json`` ask for.
        cache: where answers are kept: a SQLite file's path (created if missing) or a
            ``redis://host:port/db`` URL (`conveyor.llm.open_cache`); a request already
            answered there is not sent again. None: no cache.
        prices: the price table (None: Conveyor's default, ``conveyor/llm/prices.toml``).
        max_cost_usd: the budget: no request starts whose most possible cost (prompt plus all
            of ``max_tokens``), added to what was spent and what is in flight, would pass it.
            Requests not started stay pending: running again resumes them.
    """

    validate: Callable[[Any], object] | None = None
    cache: Path | str | None = None
    prices: PriceTable | None = None
    max_cost_usd: float | None = None

    def __post_init__(self) -> None:
        check_callable(self.validate, "validate", "takes the answer's body", "LlmOptions")
        cost = self.max_cost_usd
        if cost is not None and (
            isinstance(cost, bool)
            or not isinstance(cost, int | float)
            or not math.isfinite(cost)
            or cost <= 0
        ):
            msg = f"LlmOptions(max_cost_usd={cost!r}): pass US dollars > 0, e.g. 5.0, or None"
            raise ConfigError(msg)

    def price_table(self) -> PriceTable:
        """The prices to use."""
        return self.prices if self.prices is not None else PriceTable.default()


class AnswerHooks:
    """Counts, checks and caches the successful answers of one run (see the module docstring).

    Args:
        tally: where tokens and cost are counted.
        prices: the price table.
        validate: the answer check, if any.
        cache: the response cache, if any; `scope` names the upstream in its keys.
        redact: the run's credentials, replaced in every answer the cache stores or returns.
        secret_headers: the names of the headers that carry them (never stored).
    """

    __slots__ = ("cache", "prices", "tally", "validate")

    def __init__(
        self,
        *,
        tally: SpendCounts,
        prices: PriceTable,
        validate: Callable[[Any], object] | None = None,
        cache: AnswerCache | None = None,
        scope: str = "",
        redact: Redactor | None = None,
        secret_headers: Iterable[str] = (),
    ) -> None:
        self.tally = tally
        self.prices = prices
        self.validate = validate
        #: The cache as the run uses it (scoped keys, redacted answers), or None.
        self.cache = (
            None
            if cache is None
            else ScopedCache(
                cache, scope=("run", scope), redact=redact, secret_headers=secret_headers
            )
        )

    def key(self, method: str, url: str, body: bytes | None) -> str:
        """The cache key of a request (`ConfigError` without a cache)."""
        if self.cache is None:
            msg = "AnswerHooks.key: this run has no response cache (LlmOptions(cache=...))"
            raise ConfigError(msg)
        return self.cache.key(method, url, body)

    def count(self, body: Any) -> None:
        """Add an answer's tokens and cost to the tally."""
        usage = usage_of(body)
        if usage is None:
            return
        tally = self.tally
        tally.tokens_in += usage.prompt_tokens  # Anthropic's cache reads and writes included
        tally.tokens_out += usage.tokens_out
        cost = self.prices.answer_cost_usd(usage)
        if cost is None:
            tally.unpriced += 1
        else:
            tally.cost_usd += cost

    async def on_answer(
        self, method: str, url: str, body: bytes | None, response: Response
    ) -> None:
        """Count, check (raising `InvalidAnswer`), then cache a successful answer."""
        self.count(response.body)
        if self.validate is not None:
            try:
                self.validate(response.body)
            except InvalidAnswer as exc:
                exc.answer = response
                raise
        if self.cache is not None:
            await self.cache.keep_answer(_Sent(method, url, body), response)
