"""Checking a limiter's configuration: every wrong value named, with the fix."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..policy.adaptive import AdaptiveConcurrency
from ..policy.rates import Rate

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["check_window", "collect_rates", "concurrency_policy"]


def collect_rates(  # noqa: D103 - validation helper of Limiter.__init__
    name: str,
    rates: Sequence[Rate],
    **shortcuts: float | None,
) -> list[Rate]:
    all_rates = list(rates)
    if any(not isinstance(r, Rate) for r in all_rates):
        msg = f"Limiter({name!r}, rates=...): each rate must be a conveyor.Rate"
        raise ConfigError(msg)
    for arg, value in shortcuts.items():
        if value is None:
            continue
        unit, _, per = arg.rpartition("_per_")
        try:
            all_rates.append(Rate(value, per=per, unit=unit))
        except ConfigError:
            msg = f"Limiter({name!r}, {arg}={value!r}): {arg} must be a number > 0"
            raise ConfigError(msg) from None
    return all_rates


def check_window(  # noqa: D103 - validation helper of Limiter.__init__
    name: str, window_s: float | None, burst: float, rates: list[Rate]
) -> None:
    if window_s is not None and not (
        isinstance(window_s, int | float) and math.isfinite(window_s) and window_s > 0
    ):
        msg = f"Limiter({name!r}, window_s={window_s!r}): the window is seconds > 0, or None"
        raise ConfigError(msg)
    if not (isinstance(burst, int | float) and burst >= 0):
        msg = f"Limiter({name!r}, burst={burst!r}): burst must be a number >= 0"
        raise ConfigError(msg)
    for rate in rates:
        if window_s is not None and window_s > rate.period_s:
            msg = (
                f"Limiter({name!r}, window_s={window_s}): the enforcement window is longer"
                f" than the rate's period ({rate.period_s:g}s); it must be <= the period"
            )
            raise ConfigError(msg)


def concurrency_policy(  # noqa: D103 - validation helper of Limiter.__init__
    name: str, concurrency: object, bounds: tuple[int, int]
) -> tuple[AdaptiveConcurrency | None, int | None]:
    if concurrency is None:
        return None, None
    if concurrency == "auto":
        try:
            return AdaptiveConcurrency(min_limit=bounds[0], max_limit=bounds[1]), None
        except (ConfigError, TypeError, IndexError):
            msg = (
                f"Limiter({name!r}, concurrency_bounds={bounds!r}):"
                " give (min, max) with 1 <= min <= max"
            )
            raise ConfigError(msg) from None
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        msg = (
            f"Limiter({name!r}, concurrency={concurrency!r}): an int >= 1,"
            " 'auto', or None for no limit"
        )
        raise ConfigError(msg)
    return None, concurrency
