"""Checks of configuration values, shared by the frozen options classes: pure predicates.

Each options class still raises its own `ConfigError`, naming its argument and the fix; these
only say whether a value is acceptable, written once so that every class reads a number or an
exception matcher the same way.
"""

from __future__ import annotations

import math
from typing import TypeGuard

__all__ = ["is_exception_match", "is_number", "is_positive", "is_seconds_in"]


def is_number(value: object) -> TypeGuard[int | float]:
    """Whether `value` is an int or a float; a bool is not (``True`` would pass as 1).

    >>> is_number(2), is_number(0.5), is_number(True), is_number("3")
    (True, True, False, False)
    """
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_positive(value: object) -> bool:
    """Whether `value` is a finite number > 0.

    >>> is_positive(5.0), is_positive(0), is_positive(float("inf")), is_positive(None)
    (True, False, False, False)
    """
    return is_number(value) and math.isfinite(value) and value > 0


def is_seconds_in(value: object, most_s: float) -> bool:
    """Whether `value` is a number of seconds > 0 and at most `most_s`.

    >>> is_seconds_in(1, 60), is_seconds_in(0, 60), is_seconds_in(61, 60)
    (True, False, False)
    """
    return is_number(value) and 0 < value <= most_s


def is_exception_match(value: object) -> bool:
    """Whether `value` says which errors: an exception type, a tuple of them, or a predicate.

    A tuple must not be empty; a predicate is called ``(exception) -> bool``.

    >>> is_exception_match(ValueError), is_exception_match((KeyError, OSError))
    (True, True)
    >>> is_exception_match(()), is_exception_match((ValueError, int)), is_exception_match(int)
    (False, False, False)
    """
    if isinstance(value, tuple):
        return bool(value) and all(_is_exception_type(t) for t in value)
    if isinstance(value, type):
        return _is_exception_type(value)
    return callable(value)


def _is_exception_type(value: object) -> bool:
    return isinstance(value, type) and issubclass(value, BaseException)
