"""`Verdict`: what a failed call's error means, the one value every classifier rule answers.

Kept apart from `conveyor.policy.classify` so that the readers of each provider's errors
(`conveyor.policy.cloud_errors`) and the classifier share it without importing each other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

from ..errors import ConfigError

__all__ = ["ERROR_KINDS", "ErrorKind", "Verdict"]

ErrorKind = Literal["rate_limited", "overloaded", "quota", "transient", "permanent"]
#: Every kind, in the order the docs give them.
ERROR_KINDS: tuple[str, ...] = get_args(ErrorKind)
_RETRYABLE = frozenset({"rate_limited", "overloaded", "transient"})


@dataclass(frozen=True, slots=True)
class Verdict:
    """What an error means: its kind, the wait the API asked for (if any), and why.

    Checked when made, since your own rules make them: a misspelt kind would otherwise read as
    "not retryable" without a word.

    >>> Verdict("rate_limited", 2).retryable
    True
    >>> Verdict("rate-limited")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    conveyor.errors.ConfigError: Verdict(kind='rate-limited'): kind must be one of rate_limited, ...
    """

    kind: ErrorKind
    retry_after_s: float | None = None
    """The wait the API (or your rule) names, in seconds; ``None`` if it names none."""
    reason: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ERROR_KINDS:
            msg = f"Verdict(kind={self.kind!r}): kind must be one of {', '.join(ERROR_KINDS)}"
            raise ConfigError(msg)
        wait = self.retry_after_s
        if wait is not None:
            number = isinstance(wait, int | float) and not isinstance(wait, bool)
            if not (number and math.isfinite(wait) and wait >= 0):
                msg = (
                    f"Verdict(retry_after_s={wait!r}): the wait must be a finite number of"
                    " seconds >= 0, or None when the error names none"
                )
                raise ConfigError(msg)
            object.__setattr__(self, "retry_after_s", float(wait))
        if not isinstance(self.reason, str):
            msg = f"Verdict(reason={self.reason!r}): reason must be a str"
            raise ConfigError(msg)

    @property
    def retryable(self) -> bool:
        """Whether another try may succeed (rate limited, overloaded or transient)."""
        return self.kind in _RETRYABLE
