"""Rate specifications: "500 requests per minute", "2,000 tokens per 10 seconds".

Pure configuration, validated at construction with messages that name the fix.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ..errors import ConfigError
from ._checks import is_number, is_positive

__all__ = ["DIMENSIONS", "PERIODS_S", "Rate", "Unit", "period_s"]

#: A cost dimension's name: ``"requests"`` (each call costs 1), ``"tokens"``,
#: ``"input_tokens"``, ``"output_tokens"``, or a name of the caller's own (``"writes"``).
Unit = str

#: The dimensions the header parsers and the LLM clients know.
DIMENSIONS = ("requests", "tokens", "input_tokens", "output_tokens")

_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")

#: The period names a `Rate` understands, in seconds.
PERIODS_S: dict[str, float] = {
    "second": 1.0,
    "minute": 60.0,
    "hour": 3600.0,
    "day": 86400.0,
}


def period_s(per: str | float) -> float:
    """Return a period in seconds from a name (``"minute"``) or a number of seconds.

    >>> period_s("minute"), period_s(10)
    (60.0, 10.0)
    """
    if isinstance(per, str):
        key = per.strip().lower().removesuffix("s") if per.strip().lower() != "s" else "second"
        aliases = {"sec": "second", "min": "minute", "h": "hour", "hr": "hour", "d": "day"}
        key = aliases.get(key, key)
        if key not in PERIODS_S:
            names = ", ".join(PERIODS_S)
            msg = f"per={per!r}: unknown period; use one of {names}, or a number of seconds"
            raise ConfigError(msg)
        return PERIODS_S[key]
    if not is_positive(per):
        msg = f"per={per!r}: a period is a name ('minute') or a number of seconds > 0"
        raise ConfigError(msg)
    return float(per)


@dataclass(frozen=True, slots=True)
class Rate:
    """At most `limit` units per period.

    ``Rate(500, per="minute")``; ``Rate(2_000, per=10, unit="tokens")``.

    Args:
        limit: the budget per period (> 0).
        per: the period: ``"second"``, ``"minute"``, ``"hour"``, ``"day"`` or seconds.
        unit: the cost dimension: ``"requests"`` (each call costs 1), ``"tokens"``,
            ``"input_tokens"``, ``"output_tokens"`` (each call costs what its `cost` says for
            it), or a name of your own in lower case (``"writes"``).
    """

    limit: float
    per: str | float = "minute"
    unit: Unit = "requests"

    def __post_init__(self) -> None:
        limit = self.limit
        if not is_number(limit) or not math.isfinite(limit):
            msg = f"Rate(limit={limit!r}): the limit must be a number > 0"
            raise ConfigError(msg)
        if limit <= 0:
            msg = (
                f"Rate(limit={limit!r}): the limit must be > 0; to stop calls entirely,"
                " do not make them"
            )
            raise ConfigError(msg)
        period_s(self.per)  # validates
        if not (isinstance(self.unit, str) and _NAME.fullmatch(self.unit)):
            known = ", ".join(repr(d) for d in DIMENSIONS)
            msg = (
                f"Rate(unit={self.unit!r}): the unit is a cost dimension: {known},"
                " or a lower-case name of your own ('writes')"
            )
            raise ConfigError(msg)

    @property
    def period_s(self) -> float:
        """The period in seconds."""
        return period_s(self.per)

    def share(self, window_s: float) -> float:
        """The part of the limit that fits in a window of `window_s` seconds."""
        return self.limit * window_s / self.period_s
