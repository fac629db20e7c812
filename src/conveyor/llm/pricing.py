"""What tokens cost: a price table per model, and the cost of an answer or of a request. Pure.

The default table is ``prices.toml`` beside this module (the providers' list prices, dated in
the file); `PriceTable.load` reads a user's file of the same format instead. Costs are US
dollars; the table's prices are per million tokens.

Two costs are computed:

- an answer's, from its ``usage`` (``prompt_tokens`` / ``completion_tokens``, or Anthropic's
  ``input_tokens`` / ``output_tokens``) and its ``model``: what was spent;
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
from .tokens import DEFAULT_MAX_TOKENS, estimate_tokens

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

__all__ = ["Price", "PriceTable", "Usage", "usage_of"]

_PER = 1_000_000.0
#: Models whose price a table remembers once found.
_FOUND_KEPT = 256


@dataclass(frozen=True, slots=True)
class Price:
    """US dollars per million input and output tokens."""

    input: float
    output: float

    def cost_usd(self, tokens_in: float, tokens_out: float) -> float:
        """The cost of `tokens_in` prompt and `tokens_out` completion tokens.

        >>> Price(0.15, 0.60).cost_usd(1_000_000, 500_000)
        0.45
        """
        return (tokens_in * self.input + tokens_out * self.output) / _PER


@dataclass(frozen=True, slots=True)
class Usage:
    """The tokens an answer says it used, and the model that answered."""

    model: str | None
    tokens_in: int
    tokens_out: int


def _count(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def usage_of(body: Any) -> Usage | None:
    """The usage an answer reports, or None (no ``usage``, or not in a known shape).

    >>> usage_of({"model": "m", "usage": {"prompt_tokens": 9, "completion_tokens": 3}})
    Usage(model='m', tokens_in=9, tokens_out=3)
    """
    if hasattr(body, "model_dump"):
        body = body.model_dump()
    usage = body.get("usage") if isinstance(body, dict) else None
    if not isinstance(usage, dict):
        return None
    model = body.get("model")
    model = model if isinstance(model, str) else None
    for names in (("prompt_tokens", "completion_tokens"), ("input_tokens", "output_tokens")):
        tokens_in, tokens_out = _count(usage.get(names[0])), _count(usage.get(names[1]))
        if tokens_in is not None:
            return Usage(model, tokens_in, tokens_out or 0)
    return None


def _price(where: str, name: str, data: object) -> Price:
    ok = isinstance(data, dict) and all(
        isinstance(data.get(k), int | float)
        and not isinstance(data.get(k), bool)
        and math.isfinite(data[k])
        and data[k] >= 0
        for k in ("input", "output")
    )
    if not ok:
        msg = (
            f"{where}: [models.{name!r}] needs input = <dollars per 1M tokens> and"
            " output = <dollars per 1M tokens>, numbers >= 0"
        )
        raise ConfigError(msg)
    assert isinstance(data, dict)
    return Price(float(data["input"]), float(data["output"]))


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

        >>> PriceTable({"gpt-4o": Price(1, 2), "gpt-4o-mini": Price(3, 4)}).price("gpt-4o-mini-x")
        Price(input=3, output=4)
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
        return None if price is None else price.cost_usd(usage.tokens_in, usage.tokens_out)

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
        price = self.price(model)
        if price is None:
            return model, None
        total = estimate_tokens(data, body)
        out = _max_tokens(data)
        return model, price.cost_usd(max(total - out, 0), out)


def _max_tokens(data: dict[str, Any]) -> int:
    if not isinstance(data.get("messages"), list):
        return 0
    for name in ("max_completion_tokens", "max_tokens"):
        value = data.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return DEFAULT_MAX_TOKENS
