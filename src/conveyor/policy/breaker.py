"""A circuit breaker as a pure state machine over ``(state, now, event)``.

closed → (``failure_threshold`` failures in a row) → open → (``cooldown_s`` later) → half-open:
one probe at a time is let through; its success closes the circuit, its failure opens it again
for another cooldown. While open, callers are told how long until the next probe may go.
"""

from __future__ import annotations

from typing import Literal

from ..errors import ConfigError

__all__ = ["BreakerState", "CircuitBreaker"]

BreakerState = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """Opens after repeated failures; probes again after a cooldown."""

    __slots__ = ("_failures", "_opened_at", "_probe_out", "cooldown_s", "failure_threshold")

    def __init__(self, *, failure_threshold: int = 5, cooldown_s: float = 10.0) -> None:
        if isinstance(failure_threshold, bool) or not isinstance(failure_threshold, int):
            msg = f"failure_threshold={failure_threshold!r} must be an int >= 1"
            raise ConfigError(msg)
        if failure_threshold < 1 or not cooldown_s > 0:
            msg = (
                f"failure_threshold={failure_threshold} must be >= 1 and"
                f" cooldown_s={cooldown_s} > 0"
            )
            raise ConfigError(msg)
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self._failures = 0
        self._opened_at: float | None = None
        self._probe_out = False

    def state(self, now: float) -> BreakerState:
        """The state at `now`."""
        if self._opened_at is None:
            return "closed"
        if now - self._opened_at < self.cooldown_s:
            return "open"
        return "half_open"

    def wait_s(self, now: float) -> float:
        """0.0 if a call may go now, else seconds until one may (the next probe)."""
        state = self.state(now)
        if state == "closed":
            return 0.0
        if state == "open":
            assert self._opened_at is not None
            return self._opened_at + self.cooldown_s - now
        # Half-open: one probe at a time; the others wait about a cooldown for its verdict.
        return 0.0 if not self._probe_out else self.cooldown_s

    def on_start(self, now: float) -> None:
        """A call was let through (marks the probe when half-open)."""
        if self.state(now) == "half_open":
            self._probe_out = True

    def on_success(self, now: float) -> None:  # noqa: ARG002 - same shape as on_failure
        """A call succeeded: the circuit closes."""
        self._failures = 0
        self._opened_at = None
        self._probe_out = False

    def on_failure(self, now: float) -> None:
        """A call failed: count it, and open the circuit at the threshold (or a failed probe)."""
        was_probe = self._probe_out
        self._probe_out = False
        self._failures += 1
        if was_probe or self._failures >= self.failure_threshold:
            self._opened_at = now
