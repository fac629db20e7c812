"""What tokens cost: a price table per model, and the cost of an answer or of a request. Pure.

The default table is ``prices.toml`` beside this module (the providers' list prices, dated in
the file); `PriceTable.load` reads a user's file of the same format instead. Costs are US
dollars; the table's prices are per million tokens.

Two costs are computed:

- an answer's, from its ``usage`` (``prompt_tokens`` / ``completion_tokens``, or Anthropic's
  ``input_tokens`` / ``output_tokens``) and its ``model``: what was spent. Anthropic reports
  prompt-cache tokens apart from ``input_tokens``: ``cache_creation_input_tokens`` are priced
  at the model's ``cache_write`` price (the 5-minute cache's; 1.25x input) and
  ``cache_read_input_tokens`` at its ``cache_read`` price (0.1x input); a model with no cache
  price in the table has them priced as input. (OpenAI counts cached tokens inside
  ``prompt_tokens``, priced here as input: an upper bound.)
- a request's *upper bound* before it is sent, from the prompt's estimated tokens and its
  ``max_tokens`` (the most the answer may use): what a budget must keep room for.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any

from .._json import BadJSON, loads
from ..errors import ConfigError
from .tokens import estimate_tokens, output_bound

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

__all__ = ["Price", "PriceTable", "Usage", "usage_of"]

_PER = 1_000_000.0
#: Models whose price a table remembers once found.
_FOUND_KEPT = 256


@dataclass(frozen=True, slots=True)
class Price:
    """US dollars per million input, output, cache-write and cache-read tokens.

    `cache_write` and `cache_read` are None when the table gives none: those tokens are then
    priced as input. `date` is when the price was checked, if the table says.
    """

    input: float
    output: float
    cache_write: float | None = None
    cache_read: float | None = None
    date: str = ""

    def cost_usd(
        self,
        tokens_in: float,
        tokens_out: float,
        cache_write_tokens: float = 0,
        cache_read_tokens: float = 0,
    ) -> float:
        """The cost of `tokens_in` prompt and `tokens_out` completion tokens, and cache tokens.

        >>> Price(0.15, 0.60).cost_usd(1_000_000, 500_000)
        0.45
        >>> Price(1.0, 5.0, cache_write=1.25, cache_read=0.1).cost_usd(0, 0, 1_000_000, 1_000_000)
        1.35
        """
        write = self.input if self.cache_write is None else self.cache_write
        read = self.input if self.cache_read is None else self.cache_read
        return (
            tokens_in * self.input
            + tokens_out * self.output
            + cache_write_tokens * write
            + cache_read_tokens * read
        ) / _PER


@dataclass(frozen=True, slots=True)
class Usage:
    """The tokens an answer says it used, and the model that answered.

    `tokens_in` is the prompt as the API bills it at the input price (Anthropic's
    ``input_tokens`` leave out the prompt cache's tokens, which `cache_write_tokens` and
    `cache_read_tokens` count).
    """

    model: str | None
    tokens_in: int
    tokens_out: int
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0

    @property
    def prompt_tokens(self) -> int:
        """Every token of the prompt: billed as input, written to the cache, or read from it."""
        return self.tokens_in + self.cache_write_tokens + self.cache_read_tokens


def _count(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def usage_of(body: Any) -> Usage | None:
    """The usage an answer reports, or None (no ``usage``, or not in a known shape).

    >>> usage_of({"model": "m", "usage": {"prompt_tokens": 9, "completion_tokens": 3}})
    Usage(model='m', tokens_in=9, tokens_out=3, cache_write_tokens=0, cache_read_tokens=0)
    >>> usage_of({"model": "c", "usage": {"input_tokens": 9, "output_tokens": 3,
    ...           "cache_creation_input_tokens": 100, "cache_read_input_tokens": 2000}})
    Usage(model='c', tokens_in=9, tokens_out=3, cache_write_tokens=100, cache_read_tokens=2000)
    """
    if hasattr(body, "model_dump"):
        body = body.model_dump()
    usage = body.get("usage") if isinstance(body, dict) else None
    if not isinstance(usage, dict):
        return None
    model = body.get("model")
    model = model if isinstance(model, str) else None
    prompt = _count(usage.get("prompt_tokens"))
    if prompt is not None:
        return Usage(model, prompt, _count(usage.get("completion_tokens")) or 0)
    tokens_in = _count(usage.get("input_tokens"))
    if tokens_in is not None:
        return Usage(
            model,
            tokens_in,
            _count(usage.get("output_tokens")) or 0,
            _count(usage.get("cache_creation_input_tokens")) or 0,
            _count(usage.get("cache_read_input_tokens")) or 0,
        )
    return None


def _dollars(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


def _price(where: str, name: str, data: object) -> Price:
    ok = isinstance(data, dict) and all(_dollars(data.get(k)) for k in ("input", "output"))
    if not ok:
        msg = (
            f"{where}: [models.{name!r}] needs input = <dollars per 1M tokens> and"
            " output = <dollars per 1M tokens>, numbers >= 0"
        )
        raise ConfigError(msg)
    assert isinstance(data, dict)
    for key in ("cache_write", "cache_read"):
        if key in data and not _dollars(data[key]):
            msg = (
                f"{where}: [models.{name!r}] has {key} = {data[key]!r}: give dollars per 1M"
                " tokens, a number >= 0, or leave it out (priced as input)"
            )
            raise ConfigError(msg)
    date = data.get("date", "")
    return Price(
        float(data["input"]),
        float(data["output"]),
        _optional(data.get("cache_write")),
        _optional(data.get("cache_read")),
        date if isinstance(date, str) else str(date),
    )


def _optional(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class PriceTable:
    """Prices per model name; `date` says when they were checked."""

    prices: Mapping[str, Price] = field(default_factory=dict)
    date: str = ""
    # Each model's price as found, looked up once (a run's answers name few models; bounded,
    # as they could name a new one each).
    _found: dict[str | None, Price | None] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @classmethod
    def default(cls) -> PriceTable:
        """The table shipped with Conveyor (``conveyor/llm/prices.toml``)."""
        text = (resources.files("conveyor.llm") / "prices.toml").read_text(encoding="utf-8")
        return cls.parse(text, where="conveyor/llm/prices.toml")

    @classmethod
    def load(cls, path: Path) -> PriceTable:
        """Read a price file (the format of ``prices.toml``); `ConfigError` says what is wrong."""
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            msg = f"cannot read the price file {str(path)!r}: {exc.strerror}"
            raise ConfigError(msg) from None
        return cls.parse(text, where=str(path))

    @classmethod
    def parse(cls, text: str, *, where: str = "the price file") -> PriceTable:
        """Read a price table from TOML text."""
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            msg = f"{where} is not valid TOML: {exc}"
            raise ConfigError(msg) from None
        models = data.get("models")
        if not isinstance(models, dict) or not models:
            msg = f'{where}: no [models."name"] tables with input and output prices'
            raise ConfigError(msg)
        prices = {name: _price(where, name, value) for name, value in models.items()}
        return cls(prices, str(data.get("date", "")))

    def price(self, model: str | None) -> Price | None:
        """The price of `model`: exact name, else the longest known ``name-`` prefix.

        >>> table = PriceTable({"gpt-4o": Price(1, 2), "gpt-4o-mini": Price(3, 4)})
        >>> table.price("gpt-4o-mini-x") == Price(3, 4)
        True
        """
        if model in self._found:
            return self._found[model]
        price = self._look_up(model)
        if len(self._found) < _FOUND_KEPT:
            self._found[model] = price
        return price

    def _look_up(self, model: str | None) -> Price | None:
        if model is None:
            return None
        found = self.prices.get(model)
        if found is not None:
            return found
        best = ""
        for name in self.prices:
            if model.startswith(name + "-") and len(name) > len(best):
                best = name
        return self.prices[best] if best else None

    def answer_cost_usd(self, usage: Usage) -> float | None:
        """What an answer cost, or None if its model has no price."""
        price = self.price(usage.model)
        if price is None:
            return None
        return price.cost_usd(
            usage.tokens_in, usage.tokens_out, usage.cache_write_tokens, usage.cache_read_tokens
        )

    def request_bound_usd(self, body: bytes | None) -> tuple[str | None, float | None]:
        """The model and the most a chat request may cost: its prompt plus all of max_tokens.

        Returns ``(model, None)`` when the model has no price (or the body names none).
        """
        try:
            data = loads(body) if body else None
        except BadJSON:
            data = None
        if not isinstance(data, dict):
            return None, None
        model = data.get("model")
        model = model if isinstance(model, str) else None
        total = estimate_tokens(data, body)
        out = output_bound(data)
        return model, self.bound_usd(model, max(total - out, 0), out)

    def bound_usd(
        self, model: str | None, input_tokens: float, output_tokens: float
    ) -> float | None:
        """The most a request to `model` may cost with this many tokens in and out at most.

        None when the model has no price. A request already read (`conveyor.http.Request`)
        carries its `model` and its `most_tokens`: pricing it reads nothing again.

        >>> PriceTable({"m": Price(1, 2)}).bound_usd("m", 1_000_000, 500_000)
        2.0
        """
        price = self.price(model)
        if price is None:
            return None
        return price.cost_usd(input_tokens, output_tokens)
