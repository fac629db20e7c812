"""What the mock API simulates: latency, rate limits and faults, as frozen, validated settings."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from ..errors import ConfigError

__all__ = ["DEFAULT_PORT", "AnthropicLimits", "Faults", "MockConfig"]

#: The port `serve` (``conveyor mock-api``) listens on unless told otherwise.
DEFAULT_PORT = 8765


def _number(owner: str, name: str, value: object) -> float:
    """Return `value` as a finite float, or raise a `ConfigError` that names it."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        msg = f"{owner}({name}={value!r}): {name} must be a finite number"
        raise ConfigError(msg)
    return float(value)


def _share(per_minute: float, window_s: float) -> int:
    """Return what one window admits: ``per_minute * window_s / 60``, rounded down.

    The nudge keeps 600 rpm over 0.1 s at 10, not 9.999999999999998 rounded down to 9.
    """
    return math.floor(per_minute * window_s / 60.0 + 1e-9)


def _fraction(name: str, value: object, owner: str = "Faults") -> None:
    if not 0.0 <= _number(owner, name, value) <= 1.0:
        msg = f"{owner}({name}={value!r}): {name} is a fraction of requests, from 0.0 to 1.0"
        raise ConfigError(msg)


@dataclass(frozen=True, kw_only=True, slots=True)
class Faults:
    """Which fraction of the admitted requests fail, and how.

    One uniform draw per admitted request picks at most one fault, so the three fractions must
    add up to at most 1.

    Args:
        fail_rate: answered HTTP 500 (after the latency).
        hang_rate: never answered: the request waits until the client gives up, the server shuts
            down, or `hang_s` passes, and then its connection is closed without an answer.
        drop_rate: connection closed without an answer (after the latency).
        hang_s: the longest a hung request is held, so that hangs cannot pile up forever.
    """

    fail_rate: float = 0.0
    hang_rate: float = 0.0
    drop_rate: float = 0.0
    hang_s: float = 300.0

    def __post_init__(self) -> None:
        for name in ("fail_rate", "hang_rate", "drop_rate"):
            _fraction(name, getattr(self, name))
        total = self.fail_rate + self.hang_rate + self.drop_rate
        if total > 1.0:
            msg = (
                f"Faults(fail_rate={self.fail_rate!r}, hang_rate={self.hang_rate!r},"
                f" drop_rate={self.drop_rate!r}): the fractions add up to {total:g};"
                " lower them so that they add up to at most 1"
            )
            raise ConfigError(msg)
        if _number("Faults", "hang_s", self.hang_s) <= 0:
            msg = f"Faults(hang_s={self.hang_s!r}): hang_s must be a number of seconds > 0"
            raise ConfigError(msg)

    @property
    def any(self) -> bool:
        """Return whether any fault can happen at all."""
        return self.fail_rate + self.hang_rate + self.drop_rate > 0.0


@dataclass(frozen=True, kw_only=True, slots=True)
class AnthropicLimits:
    """How the Messages route (``POST /v1/messages``, Anthropic's shape) limits and fails.

    Each limit is a token bucket holding ``max(limit / 60 * burst_s, 1)`` and refilling
    continuously at ``limit / 60`` a second (see `conveyor.mockapi.bucket`).

    >>> AnthropicLimits(rpm=50, itpm=30_000, otpm=8_000, overloaded_rate=0.03)  # doctest: +SKIP

    Args:
        rpm: requests per minute, or None for no request limit.
        itpm: input tokens per minute (taken on arrival), or None for no limit.
        otpm: output tokens per minute (taken when the answer is produced), or None.
        burst_s: the seconds of the per-minute rate each bucket holds: 1.0 enforces 60 RPM as
            one request a second; 60.0 lets a whole minute's worth through at once.
        overloaded_rate: the fraction of admitted requests answered 529 ``overloaded_error``
            at once (no latency, no output).
        spend_cap_tokens: the input plus output tokens the account may spend in all, or None
            for no cap; past it, every request is a 429 naming the spend limit.
    """

    rpm: float | None = None
    itpm: float | None = None
    otpm: float | None = None
    burst_s: float = 1.0
    overloaded_rate: float = 0.0
    spend_cap_tokens: int | None = None

    def __post_init__(self) -> None:
        for name in ("rpm", "itpm", "otpm"):
            value = getattr(self, name)
            if value is not None and _number("AnthropicLimits", name, value) <= 0:
                msg = (
                    f"AnthropicLimits({name}={value!r}): {name} is a per-minute limit > 0,"
                    " or None for no limit"
                )
                raise ConfigError(msg)
        if _number("AnthropicLimits", "burst_s", self.burst_s) <= 0:
            msg = (
                f"AnthropicLimits(burst_s={self.burst_s!r}): burst_s must be a number of"
                " seconds > 0 (1.0 enforces 60 RPM as 1 request a second)"
            )
            raise ConfigError(msg)
        _fraction("overloaded_rate", self.overloaded_rate, "AnthropicLimits")
        cap = self.spend_cap_tokens
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
            msg = (
                f"AnthropicLimits(spend_cap_tokens={cap!r}): spend_cap_tokens must be a whole"
                " number of tokens >= 1, or None for no cap"
            )
            raise ConfigError(msg)

    @property
    def limited(self) -> bool:
        """Return whether any rate limit or the spend cap is set (state one process must keep)."""
        limits = (self.rpm, self.itpm, self.otpm, self.spend_cap_tokens)
        return any(limit is not None for limit in limits)


@dataclass(frozen=True, kw_only=True, slots=True)
class MockConfig:
    """How the mock API behaves.

    >>> MockConfig(latency_ms=50, rpm=600, faults=Faults(fail_rate=0.05), seed=7)  # doctest: +SKIP

    Args:
        latency_ms: the time an answer takes, in milliseconds; the median when lognormal.
        latency: ``"fixed"`` (every answer takes `latency_ms`) or ``"lognormal"`` (median
            `latency_ms`, spread `latency_sigma`: a long right tail, like real APIs).
        latency_sigma: the sigma of the lognormal latency (ignored when fixed).
        rpm: requests per minute on the OpenAI routes (chat, echo), or None for no limit.
        tpm: tokens per minute on the OpenAI routes, or None for no token limit.
        window_s: the OpenAI routes' enforcement window. Every sliding window of `window_s`
            seconds admits at most ``rpm * window_s / 60`` requests and ``tpm * window_s / 60``
            tokens.
        faults: which fraction of admitted requests fail, hang or are dropped (every route).
        anthropic: the Messages route's token buckets, 529s and spend cap (none by default).
        seed: the seed of the fault and latency draws (None: a fresh seed each run). With a
            seed, the n-th admitted request gets the same fault and latency in every run.
    """

    latency_ms: float = 50.0
    latency: Literal["fixed", "lognormal"] = "fixed"
    latency_sigma: float = 0.5
    rpm: float | None = None
    tpm: float | None = None
    window_s: float = 60.0
    faults: Faults = field(default_factory=Faults)
    anthropic: AnthropicLimits = field(default_factory=AnthropicLimits)
    seed: int | None = None

    def __post_init__(self) -> None:
        if _number("MockConfig", "latency_ms", self.latency_ms) < 0:
            msg = f"MockConfig(latency_ms={self.latency_ms!r}): latency_ms must be >= 0"
            raise ConfigError(msg)
        if self.latency not in ("fixed", "lognormal"):
            msg = f"MockConfig(latency={self.latency!r}): latency must be 'fixed' or 'lognormal'"
            raise ConfigError(msg)
        if _number("MockConfig", "latency_sigma", self.latency_sigma) < 0:
            msg = f"MockConfig(latency_sigma={self.latency_sigma!r}): latency_sigma must be >= 0"
            raise ConfigError(msg)
        if _number("MockConfig", "window_s", self.window_s) <= 0:
            msg = (
                f"MockConfig(window_s={self.window_s!r}): window_s must be a number of seconds > 0"
            )
            raise ConfigError(msg)
        self._check_rate("rpm", self.rpm, "requests")
        self._check_rate("tpm", self.tpm, "tokens")
        if not isinstance(self.faults, Faults):
            msg = f"MockConfig(faults={self.faults!r}): pass faults=Faults(fail_rate=..., ...)"
            raise ConfigError(msg)
        if not isinstance(self.anthropic, AnthropicLimits):
            msg = (
                f"MockConfig(anthropic={self.anthropic!r}): pass"
                " anthropic=AnthropicLimits(rpm=..., itpm=..., otpm=...)"
            )
            raise ConfigError(msg)
        if self.seed is not None and (
            isinstance(self.seed, bool) or not isinstance(self.seed, int)
        ):
            msg = f"MockConfig(seed={self.seed!r}): seed must be an int, or None for a fresh one"
            raise ConfigError(msg)

    def _check_rate(self, name: str, value: float | None, unit: str) -> None:
        if value is None:
            return
        if _number("MockConfig", name, value) <= 0:
            msg = f"MockConfig({name}={value!r}): {name} must be > 0, or None for no limit"
            raise ConfigError(msg)
        share = _share(value, self.window_s)
        if share < 1:
            msg = (
                f"MockConfig({name}={value!r}, window_s={self.window_s!r}): a window would"
                f" admit {value * self.window_s / 60.0:g} {unit}, less than one; raise {name}"
                f" or window_s so that {name} * window_s / 60 >= 1"
            )
            raise ConfigError(msg)

    @property
    def request_share(self) -> int | None:
        """Return the requests any window admits (``rpm * window_s / 60``, rounded down)."""
        return None if self.rpm is None else _share(self.rpm, self.window_s)

    @property
    def token_share(self) -> int | None:
        """Return the tokens any window admits (``tpm * window_s / 60``, rounded down)."""
        return None if self.tpm is None else _share(self.tpm, self.window_s)
