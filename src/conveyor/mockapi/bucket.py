"""Token buckets with continuous refill: the Messages route's rate limits, pure (``now`` passed in).

Anthropic documents its limits as token buckets: capacity comes back continuously up to the
maximum instead of resetting at fixed times, and a per-minute limit may be enforced over a
shorter period ("60 RPM may be enforced as 1 request a second"). The mock keeps one bucket per
dimension, each holding at most ``max(per_minute / 60 * burst_s, 1)`` and refilling at
``per_minute / 60`` a second:

- **requests** (RPM) and **input tokens** (ITPM) are taken when a request arrives;
- **output tokens** (OTPM) are taken when the answer is produced, so the output bucket may go
  below zero: a debt, repaid by the same refill, during which no request is admitted.

A request is admitted only if, at its arrival, the requests bucket holds at least 1, the input
bucket at least its input tokens, and the output bucket more than 0. Checking at arrival is
enough for the bound: no interval of length T admits more than ``capacity + rate * T`` requests
or input tokens, because each bucket starts at most full and gains at most ``rate * T`` in the
interval. Output taken in an interval is bounded by ``capacity + rate * T`` plus the debt at
its end: a request admitted while the output bucket was positive may still be running when
others drive it negative (Anthropic counts output "as it is produced").

A refusal says exactly when the request would be admitted if nothing else happened: the moment
the slowest of the buckets it is short on has refilled enough (``math.inf`` when its input can
never fit the input bucket, which is a client error, not a rate limit).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..policy.bucket import require_positive

__all__ = ["BucketState", "Decision", "MessagesLimiter", "TokenBucket"]

#: The names of the dimensions, as the refusal messages and the headers say them.
REQUESTS = "requests"
INPUT = "input tokens"
OUTPUT = "output tokens"


class TokenBucket:
    """One dimension's bucket: up to `capacity`, refilled at `rate_per_s`, starting full.

    Times are seconds on any monotonic clock and must not go backwards.

    >>> bucket = TokenBucket(per_minute=60, burst_s=1.0)  # 60 RPM as 1 request a second
    >>> bucket.capacity, bucket.level(0.0)
    (1.0, 1.0)
    >>> bucket.take(0.0, 1.0)
    >>> bucket.level(0.5), bucket.seconds_until(0.5, 1.0)
    (0.5, 0.5)
    """

    def __init__(self, *, per_minute: float, burst_s: float) -> None:
        require_positive(
            per_minute, f"TokenBucket(per_minute={per_minute!r}): per_minute must be > 0"
        )
        require_positive(burst_s, f"TokenBucket(burst_s={burst_s!r}): burst_s must be > 0 seconds")
        self.per_minute = per_minute
        self.rate_per_s = per_minute / 60.0
        self.capacity = max(self.rate_per_s * burst_s, 1.0)
        self._level = self.capacity
        self._at = -math.inf  # when `_level` was last set; full since forever

    def level(self, now: float) -> float:
        """Return what the bucket holds at `now` (negative: a debt)."""
        if now < self._at:
            msg = f"TokenBucket.level(now={now!r}): time went backwards from {self._at!r}"
            raise ValueError(msg)
        if self._level >= self.capacity:
            return self.capacity
        return min(self.capacity, self._level + (now - self._at) * self.rate_per_s)

    def take(self, now: float, amount: float) -> None:
        """Take `amount` at `now`, whatever the bucket holds (it may go below zero)."""
        self._level = self.level(now) - amount
        self._at = now

    def seconds_until(self, now: float, amount: float, *, strict: bool = False) -> float:
        """Return the seconds from `now` until the bucket holds `amount` (more than it if strict).

        0 if it does already; ``math.inf`` if it never will (more than the capacity). The answer
        is exact to the float: at ``now`` plus it the condition holds, so a client that waits
        exactly that long is admitted if nothing else happened meanwhile.
        """
        if self._holds(now, amount, strict=strict):
            return 0.0
        if amount > self.capacity or (strict and amount >= self.capacity):
            return math.inf
        at = now + (amount - self.level(now)) / self.rate_per_s
        while not self._holds(at, amount, strict=strict):
            at = math.nextafter(at, math.inf)
        delay = at - now
        while now + delay < at:  # the subtraction may round one unit short
            delay = math.nextafter(delay, math.inf)
        return delay

    def full_in(self, now: float) -> float:
        """Return the seconds from `now` until the bucket is full again (0 if it is)."""
        return max(0.0, (self.capacity - self.level(now)) / self.rate_per_s)

    def state(self, now: float) -> BucketState:
        """Return what the headers report about the bucket at `now`."""
        return BucketState(
            per_minute=self.per_minute,
            capacity=self.capacity,
            level=self.level(now),
            full_in_s=self.full_in(now),
        )

    def _holds(self, now: float, amount: float, *, strict: bool) -> bool:
        level = self.level(now)
        return level > amount if strict else level >= amount


@dataclass(frozen=True, slots=True)
class BucketState:
    """One bucket at one moment: its per-minute limit, capacity, level and time to full."""

    per_minute: float
    capacity: float
    level: float
    full_in_s: float

    @property
    def per_minute_left(self) -> float:
        """What the bucket holds as a per-minute figure (full: the limit), >= 0.

        Anthropic reports ``remaining`` against the per-minute ``limit`` however short the
        period it enforces over; the mock scales the bucket's level the same way.
        """
        return max(0.0, self.level) / self.capacity * self.per_minute


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to one request.

    Attributes:
        admitted: whether it may go ahead (its request and input tokens are then taken).
        retry_after_s: 0 when admitted; otherwise the seconds until it would be admitted if
            nothing else happened, or ``math.inf`` when its input exceeds the input bucket's
            capacity (it never fits).
        short: the dimensions it was refused for, among ``"requests"``, ``"input tokens"``,
            ``"output tokens"`` (empty when admitted).
    """

    admitted: bool
    retry_after_s: float
    short: tuple[str, ...] = ()

    @property
    def never(self) -> bool:
        """Return whether the request can never be admitted (its input exceeds the capacity)."""
        return math.isinf(self.retry_after_s)


_ADMITTED = Decision(admitted=True, retry_after_s=0.0)


class MessagesLimiter:
    """The three buckets of the Messages route; a dimension with no limit has no bucket.

    >>> limiter = MessagesLimiter(rpm=60, itpm=600, otpm=60, burst_s=1.0)
    >>> limiter.try_admit(0.0, input_tokens=8).admitted
    True
    >>> limiter.settle_output(0.5, output_tokens=3)  # the output bucket now owes 2
    >>> refused = limiter.try_admit(0.5, input_tokens=1)
    >>> refused.short, refused.retry_after_s  # output needs 2 s; requests only 0.5 s
    (('requests', 'output tokens'), 2.0000000000000004)
    """

    def __init__(
        self, *, rpm: float | None, itpm: float | None, otpm: float | None, burst_s: float
    ) -> None:
        self.burst_s = burst_s
        self.requests = None if rpm is None else TokenBucket(per_minute=rpm, burst_s=burst_s)
        self.input = None if itpm is None else TokenBucket(per_minute=itpm, burst_s=burst_s)
        self.output = None if otpm is None else TokenBucket(per_minute=otpm, burst_s=burst_s)

    def try_admit(self, now: float, *, input_tokens: int) -> Decision:
        """Admit a request of `input_tokens` at `now` if every bucket allows it."""
        if self.input is not None and input_tokens > self.input.capacity:
            return Decision(admitted=False, retry_after_s=math.inf, short=(INPUT,))
        waits = []
        if self.requests is not None:
            waits.append((REQUESTS, self.requests.seconds_until(now, 1.0)))
        if self.input is not None:
            waits.append((INPUT, self.input.seconds_until(now, input_tokens)))
        if self.output is not None:
            waits.append((OUTPUT, self.output.seconds_until(now, 0.0, strict=True)))
        short = tuple(name for name, wait in waits if wait > 0.0)
        if short:
            return Decision(
                admitted=False, retry_after_s=max(wait for _, wait in waits), short=short
            )
        if self.requests is not None:
            self.requests.take(now, 1.0)
        if self.input is not None:
            self.input.take(now, input_tokens)
        return _ADMITTED

    def settle_output(self, now: float, *, output_tokens: int) -> None:
        """Take an answer's output tokens at `now`, when it is produced (may leave a debt)."""
        if self.output is not None:
            self.output.take(now, output_tokens)

    def states(self, now: float) -> dict[str, BucketState]:
        """Return the state of each bucket there is, by dimension name."""
        buckets = ((REQUESTS, self.requests), (INPUT, self.input), (OUTPUT, self.output))
        return {name: bucket.state(now) for name, bucket in buckets if bucket is not None}
