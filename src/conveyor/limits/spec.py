"""`LimiterConfig`: what a limiter enforces, as one frozen, validated value.

`Limiter(...)` takes the same settings as keyword arguments, for convenience, and builds one of
these; `Limiter.from_config` takes it whole (to share one set-up between a local and a
Redis-held limiter, or to keep it in a settings file). Every value is checked here, once, and a
wrong one fails with `ConfigError` naming the argument and the fix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypedDict, Unpack

from ..errors import ConfigError
from .config import check_window, collect_rates, concurrency_policy
from .constraints import DEBT_DIMENSIONS, Shape

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..policy.rates import Rate

__all__ = ["LimiterConfig", "LimiterSettings", "check_one_shape", "limiter_config"]


class LimiterSettings(TypedDict, total=False):
    """`Limiter`'s limits, as keyword arguments; see `Limiter` for what each means.

    Each is optional: one left out takes `LimiterConfig`'s default (no rate, no concurrency
    limit, paced), and a rate shortcut (``requests_per_minute``...) becomes a `Rate`.
    """

    requests_per_minute: float | None
    requests_per_second: float | None
    tokens_per_minute: float | None
    tokens_per_second: float | None
    input_tokens_per_minute: float | None
    output_tokens_per_minute: float | None
    rates: Sequence[Rate]
    concurrency: int | Literal["auto"] | None
    concurrency_bounds: tuple[int, int]
    window_s: float | None
    bucket_s: float | None
    burst: float
    output_estimate: float | None
    output_reserve: Literal["learned", "bound"]


#: The rate shortcuts among the settings, each ``<unit>_per_<period>`` (`collect_rates`).
_SHORTCUTS = (
    "requests_per_minute",
    "requests_per_second",
    "tokens_per_minute",
    "tokens_per_second",
    "input_tokens_per_minute",
    "output_tokens_per_minute",
)


def limiter_config(name: str, **settings: Unpack[LimiterSettings]) -> LimiterConfig:
    """The `LimiterConfig` of `Limiter`'s keyword arguments (the shortcuts become rates)."""
    _check_name(name)
    given: dict[str, Any] = dict(settings)
    for key in given.keys() - LimiterSettings.__optional_keys__:
        # What Python says of an unknown keyword, naming the call the user wrote.
        msg = f"Limiter({name!r}) got an unexpected keyword argument {key!r}"
        raise TypeError(msg)
    shortcuts = {key: given.pop(key) for key in _SHORTCUTS if key in given}
    rates = collect_rates(name, given.pop("rates", ()), **shortcuts)
    return LimiterConfig(name=name, rates=tuple(rates), **given)


def _check_name(name: object) -> None:
    if not isinstance(name, str) or not name:
        msg = f"Limiter(name={name!r}): give the limiter a name, e.g. the API's ('openai')"
        raise ConfigError(msg)


@dataclass(frozen=True, slots=True, kw_only=True)
class LimiterConfig:
    """The limits of one API; see `conveyor.Limiter` for what each setting means."""

    name: str
    rates: tuple[Rate, ...] = ()
    window_s: float | None = None
    bucket_s: float | None = None
    burst: float = 0.0
    concurrency: int | Literal["auto"] | None = None
    concurrency_bounds: tuple[int, int] = (1, 100)
    output_estimate: float | None = None
    output_reserve: Literal["learned", "bound"] = "learned"
    #: The dimensions the rates limit, in the order first named.
    dimensions: tuple[str, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        name = self.name
        _check_name(name)
        rates = collect_rates(name, self.rates)
        object.__setattr__(self, "rates", tuple(rates))
        check_window(name, self.window_s, self.burst, rates)
        check_one_shape(f"Limiter({name!r})", self.window_s, self.bucket_s)
        if self.bucket_s is not None:
            _check_bucket(name, self.bucket_s, rates)
        concurrency_policy(name, self.concurrency, self.concurrency_bounds)
        estimate = self.output_estimate
        if estimate is not None and not (
            isinstance(estimate, int | float)
            and not isinstance(estimate, bool)
            and math.isfinite(estimate)
            and estimate > 0
        ):
            msg = (
                f"Limiter({name!r}, output_estimate={estimate!r}): a first guess of a call's"
                " output tokens, a number > 0"
            )
            raise ConfigError(msg)
        if self.output_reserve not in ("learned", "bound"):
            msg = (
                f"Limiter({name!r}, output_reserve={self.output_reserve!r}): 'learned' (what"
                " answers produce, settled from each answer) or 'bound' (each call's max_tokens)"
            )
            raise ConfigError(msg)
        dims: list[str] = []
        for rate in rates:
            if rate.unit not in dims:
                dims.append(rate.unit)
        object.__setattr__(self, "dimensions", tuple(dims))

    @property
    def shape(self) -> Shape:
        """How the API enforces the limits: ``window``, ``bucket``, or ``paced`` (not known)."""
        if self.window_s is not None:
            return "window"
        if self.bucket_s is not None:
            return "bucket"
        return "paced"

    @property
    def costed(self) -> tuple[str, ...]:
        """The dimensions each call must say its cost in (all but ``requests``)."""
        return tuple(d for d in self.dimensions if d != "requests")


def check_one_shape(where: str, window_s: object, bucket_s: object) -> None:
    """Refuse a window and buckets together: an API enforces its limits in one shape.

    `where` names the settings in the error (``Limiter('openai')``, ``connections.openai``).
    """
    if window_s is not None and bucket_s is not None:
        msg = (
            f"{where}: window_s={window_s!r} and bucket_s={bucket_s!r}: an API enforces its"
            " limits over a sliding window (window_s, OpenAI) or as token buckets (bucket_s,"
            " Anthropic); give one of them: window_s or bucket_s, not both"
        )
        raise ConfigError(msg)


def _check_bucket(name: str, bucket_s: float, rates: list[Rate]) -> None:
    ok = isinstance(bucket_s, int | float) and not isinstance(bucket_s, bool)
    if not (ok and math.isfinite(bucket_s) and bucket_s > 0):
        msg = (
            f"Limiter({name!r}, bucket_s={bucket_s!r}): the seconds of the rate a bucket holds"
            " (Anthropic's: about 1), a number > 0"
        )
        raise ConfigError(msg)
    for rate in rates:
        capacity = rate.limit / rate.period_s * bucket_s
        if rate.unit == "requests" and capacity < 1.0 - 1e-9:
            least = rate.period_s / rate.limit
            msg = (
                f"Limiter({name!r}, bucket_s={bucket_s:g}): a bucket of {rate.limit:g} requests"
                f" per {rate.period_s:g} s holding {bucket_s:g} s of it holds {capacity:.2f}"
                f" requests, less than one call: no call could ever start. Give bucket_s >="
                f" {least:.3g}"
            )
            raise ConfigError(msg)
        if rate.unit in DEBT_DIMENSIONS:
            continue  # a call only needs the bucket above zero
        if rate.period_s < bucket_s:
            msg = (
                f"Limiter({name!r}, bucket_s={bucket_s:g}): longer than the period of"
                f" {rate.limit:g} {rate.unit} per {rate.period_s:g} s; it must be <= the period"
            )
            raise ConfigError(msg)
