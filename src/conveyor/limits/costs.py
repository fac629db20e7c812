"""What one call costs in each of a limiter's dimensions, before it is sent and once answered.

A call's cost is given as a number or as a mapping of dimension to units:

- a number is the cost in the limiter's one costed dimension (``tokens`` in the usual case);
  a limiter with several (input and output tokens) needs the mapping;
- ``{"input_tokens": 1200, "output_tokens": 1024}``: ``output_tokens`` is the most the answer
  may hold (``max_tokens``), a bound; ``tokens``, when limited but not given, is the sum.
  Dimensions the limiter does not limit are ignored, so one mapping serves several limiters.

Output tokens are reserved before the call and settled from its answer. Reserving the bound is
safe but wasteful: an answer of 200 tokens under ``max_tokens=1024`` holds five times its
output budget while in flight. So once a few answers were seen, a call reserves a high
quantile of the outputs seen so far (`conveyor.policy.output_estimate`), never more than its
bound; what it really produced is settled when the answer comes (docs/explanations/limits.md
measures the two).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ..policy.output_estimate import OutputEstimate

if TYPE_CHECKING:
    from .spec import LimiterConfig

__all__ = ["Cost", "CostModel", "usage_costs"]

#: A call's cost: units of the one costed dimension, or units per dimension.
Cost = float | Mapping[str, float]


def _units(name: str, owner: str, value: object) -> float:
    if not _is_number(value) or not math.isfinite(value) or value < 0:  # type: ignore[arg-type, operator]
        msg = f"{owner}: cost[{name!r}]={value!r} must be a number >= 0"
        raise ConfigError(msg)
    return float(value)  # type: ignore[arg-type]


class CostModel:
    """Turns a call's stated cost into units per dimension (reserved), and learns output."""

    __slots__ = ("_costed", "_learned", "_name", "output")

    def __init__(self, config: LimiterConfig) -> None:
        self._name = config.name
        self._costed = config.costed
        self._learned = config.output_reserve == "learned"
        self.output: OutputEstimate | None = (
            OutputEstimate(first_guess=config.output_estimate)
            if "output_tokens" in config.dimensions
            else None
        )

    def reserve(self, cost: Cost) -> dict[str, float]:
        """The units `cost` books in each costed dimension; `ConfigError` if one is unsaid."""
        owner = self._name
        if not isinstance(cost, Mapping):
            if not _is_number(cost) or not math.isfinite(cost) or cost < 0:
                msg = f"{owner}: cost={cost!r} must be a number >= 0 (estimated tokens)"
                raise ConfigError(msg)
            units = float(cost)
            if len(self._costed) <= 1:
                return dict.fromkeys(self._costed, units)
            dims = ", ".join(f"{d!r}: ..." for d in self._costed)
            msg = (
                f"{owner}: this limiter limits {', '.join(self._costed)}; give each call's cost"
                f" per dimension, cost={{{dims}}} (output_tokens: the call's max_tokens)"
            )
            raise ConfigError(msg)
        given = {str(k): _units(str(k), owner, v) for k, v in cost.items()}
        reserved: dict[str, float] = {}
        for dim in self._costed:
            if dim == "output_tokens":
                reserved[dim] = self._reserve_output(given.get(dim))
            elif dim in given:
                reserved[dim] = given[dim]
            elif dim == "tokens" and ("input_tokens" in given or "output_tokens" in given):
                reserved[dim] = given.get("input_tokens", 0.0) + given.get("output_tokens", 0.0)
            else:
                msg = (
                    f"{owner}: the call's cost {dict(given)!r} names no {dim!r}, which this"
                    f" limiter limits; add cost[{dim!r}]"
                )
                raise ConfigError(msg)
        return reserved

    def refresh(self, units: dict[str, float], cost: Cost) -> None:
        """Set `units`' output reservation to what is learned now (a call that waited).

        A call's units are worked out when it asks; one that waits in the queue meanwhile
        would keep the reservation of that moment: before any answer, its whole bound. Fifty
        calls queued at the start then each held the output budget for their ``max_tokens``
        (a second or more each) long after the answers had shown they produce a few tokens.
        Only a learned reservation of a cost stated per dimension changes; never above its
        bound.
        """
        output = self.output
        if output is None or not self._learned or "output_tokens" not in units:
            return
        if not isinstance(cost, Mapping) or output.seen == 0:
            return
        bound = cost.get("output_tokens")
        units["output_tokens"] = self._reserve_output(None if bound is None else float(bound))

    def _reserve_output(self, bound: float | None) -> float:
        assert self.output is not None
        guess = self.output.estimate() if self._learned or bound is None else None
        if bound is not None:
            return bound if guess is None else min(bound, guess)
        if guess is None:
            msg = (
                f"{self._name}: this limiter limits output_tokens, and the call's cost names no"
                " output_tokens bound: give cost['output_tokens'] (the call's max_tokens), or"
                " the limiter an output_estimate= first guess"
            )
            raise ConfigError(msg)
        return guess

    def real(self, reserved: Mapping[str, float], used: Cost) -> dict[str, float]:
        """The units each costed dimension really took, from the answer's `used` figures."""
        if not isinstance(used, Mapping):
            value = _units("", self._name, used)
            if len(self._costed) == 1:
                return {self._costed[0]: value}
            if "tokens" in reserved:
                return {**reserved, "tokens": value}
            return dict(reserved)
        given = {str(k): _units(str(k), self._name, v) for k, v in used.items()}
        real = dict(reserved)
        for dim in reserved:
            if dim in given:
                real[dim] = given[dim]
            elif dim == "tokens" and ("input_tokens" in given or "output_tokens" in given):
                real[dim] = given.get("input_tokens", 0.0) + given.get("output_tokens", 0.0)
        if self.output is not None and "output_tokens" in given:
            self.output.observe(given["output_tokens"])
        return real


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def usage_costs(usage: Any) -> dict[str, float] | None:
    """An answer's ``usage`` as units per dimension, for OpenAI's and Anthropic's shapes.

    OpenAI: ``prompt_tokens``, ``completion_tokens``, ``total_tokens``. Anthropic:
    ``input_tokens`` (+ ``cache_creation_input_tokens``, which count toward its input limit;
    cache reads do not), ``output_tokens``. Works on dicts and on SDK objects; None when no
    figure is there.
    """

    def get(name: str) -> float | None:
        value = usage.get(name) if isinstance(usage, Mapping) else getattr(usage, name, None)
        if not _is_number(value):
            return None
        number = float(value)  # type: ignore[arg-type]
        return number if math.isfinite(number) and number >= 0 else None

    if usage is None:
        return None
    prompt, completion = get("prompt_tokens"), get("completion_tokens")
    if prompt is not None or completion is not None:
        out = {"input_tokens": prompt or 0.0, "output_tokens": completion or 0.0}
        total = get("total_tokens")
        out["tokens"] = total if total is not None else out["input_tokens"] + out["output_tokens"]
        return out
    inp, outp = get("input_tokens"), get("output_tokens")
    if inp is None and outp is None:
        return None
    inp = (inp or 0.0) + (get("cache_creation_input_tokens") or 0.0)
    return {"input_tokens": inp, "output_tokens": outp or 0.0, "tokens": inp + (outp or 0.0)}
