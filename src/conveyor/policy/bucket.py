"""A token bucket with continuous refill and a burst capacity: pure, over plain numbers.

Anthropic states its limits per minute and enforces them as token buckets: each budget
(requests, input tokens, output tokens) refills continuously at ``limit / 60`` a second up to
a capacity, so that "60 requests a minute" may be enforced as one a second. A call is let in
when the bucket holds its cost (`debt` off), or, with `debt` on, when the bucket holds more
than a margin: the API counts output tokens as they are produced, so a call needs the bucket
above zero when it arrives, and what it produces is taken when its answer is written
(`produce`), which may take the bucket below zero, a debt that refills like the rest. Such a
bucket is the API's own, mirrored: nothing is taken when a call is let in, and the margin
(half the bucket) covers answers the API has written and we have not read yet. A second
debt bucket with `mirror` off takes each call's reservation when it is let in and corrects
it at the answer: it spreads calls at the rate, so that a mirror refilled past its margin
does not let every waiting call in at once (a burst whose answers, written together, then
outran what we had read: 429s). Given a `room`, a call needs that share of the capacity in it
(at most its reservation), not just a level above zero: calls let in together are answered
together, and their answers, taken at once, must fit the mirror's margin.

The level is kept as a "theoretical arrival time" (`tat`): the moment the bucket would be
full again. At `now` the bucket holds ``capacity - (tat - now) * rate`` (never more than the
capacity), so a call of cost `c` fits when ``tat - now <= (capacity - c) / rate``. Admitting it
moves `tat` by ``c / rate``. This is the Generic Cell Rate Algorithm with a tolerance that
depends on the cost (ITU-T I.371); it needs no timer and no per-call memory.

The guarantee, for any clock and any sequence of costs: over any interval of length T, the
costs admitted sum to at most ``capacity + rate * T`` (with `debt`, what was produced in it,
plus the last answer's, which may overdraw the bucket once).
"""

from __future__ import annotations

import math

__all__ = ["TokenBucket", "require_positive"]


def require_positive(value: float, message: str) -> None:
    """Raise `ValueError` with `message` unless `value` is a finite number above zero."""
    if not (math.isfinite(value) and value > 0):
        raise ValueError(message)


#: Waits end this far past the exact moment, so float rounding cannot leave a call short.
_PAD_S = 1e-9
_EPS = 1e-9


class TokenBucket:
    """At most `capacity` at once, refilled at `rate_per_s`; see the module docstring."""

    __slots__ = ("capacity", "debt", "late_s", "mirror", "rate_per_s", "reserve", "tat")

    def __init__(
        self,
        *,
        rate_per_s: float,
        capacity: float,
        debt: bool = False,
        late_s: float = 0.0,
        mirror: bool = True,
        reserve: float = 0.0,
    ) -> None:
        require_positive(
            rate_per_s, f"TokenBucket(rate_per_s={rate_per_s!r}): the refill rate must be > 0"
        )
        require_positive(capacity, f"TokenBucket(capacity={capacity!r}): the capacity must be > 0")
        self.rate_per_s = rate_per_s
        self.capacity = capacity
        self.debt = debt
        #: How late the API may see a call after it was let in: a call let in from a full
        #: bucket is taken as of then, since the API's bucket, still full, wastes that refill.
        self.late_s = late_s
        #: With `debt`: True mirrors the API (nothing taken at admission, `produce` at the
        #: answer); False takes each call's reservation at admission and corrects it with
        #: `settle` (a call needs the bucket above zero): this spreads calls at the rate, so
        #: that a bucket refilled past its margin does not let every waiting call in at once.
        self.mirror = mirror
        #: Without `debt`: the share of the capacity a call must leave in the bucket, as far
        #: as it can (a call costing more than the rest waits for a full bucket). Calls a busy
        #: sender sends together reach the API's bucket together: this much room takes them.
        self.reserve = reserve
        self.tat = -math.inf  # full

    def level(self, now: float) -> float:
        """What the bucket holds at `now` (below zero: a debt)."""
        return self.capacity - max(self.tat - now, 0.0) * self.rate_per_s

    def largest_cost(self) -> float:
        """The largest cost one call may have (infinite with `debt`: it only needs room)."""
        return math.inf if self.debt else self.capacity

    def wait_s(self, now: float, cost: float, *, room: float = 0.0) -> float:
        """Seconds from `now` until `cost` fits (0.0: now; inf: never).

        `room`, with `debt` and `mirror` off: the share of the capacity the call needs in the
        bucket (at most its cost); 0 lets it in while the bucket is above zero.
        """
        need = cost
        if self.debt:
            need = self.capacity / 2 if self.mirror else min(cost, room * self.capacity)
        if need > self.capacity + _EPS:
            return math.inf
        # Fits when tat - now <= (capacity - need) / rate; with debt, the level must be > need.
        kept = 0.0 if self.debt else min(self.reserve * self.capacity, self.capacity - need)
        slack_s = (self.capacity - need - kept) / self.rate_per_s
        wait = self.tat - slack_s - now
        if self.debt:
            return 0.0 if wait < 0 else wait + _PAD_S
        return 0.0 if wait <= _EPS else wait + _PAD_S

    def admit(self, now: float, cost: float) -> float | None:
        """Take `cost` from the bucket at `now` (call only when `wait_s` said 0).

        Returns the moment the cost is counted from when the bucket is full by then (the
        API's bucket, full until the call reaches it, loses the refill until it does: see
        `redate`), else None. With `debt`, nothing is taken now: the call's output is taken
        when it is produced.
        """
        if not self.debt:
            start = now + self.late_s
            full = self.tat <= start
            self.tat = max(self.tat, start) + cost / self.rate_per_s
            return start if full else None
        if not self.mirror:
            self.tat = max(self.tat, now) + cost / self.rate_per_s
        return None

    def redate(self, start: float, now: float) -> float:
        """A call counted from `start`, when the bucket was full, reached the API at `now`.

        The API's bucket stayed full until then and lost that refill: everything taken since
        is owed that much longer. Returns the moment the call now counts from.
        """
        if now <= start:
            return start
        self.tat += now - start
        return now

    def produce(self, now: float, cost: float) -> None:
        """Take `cost` at `now`, when an answer was written (`debt`): the API's own moment."""
        self.tat = max(self.tat, now) + cost / self.rate_per_s

    def settle(self, delta: float) -> None:
        """Take (or give back, `delta` < 0) the gap between a call's real cost and its estimate.

        The bucket never holds more than its capacity, whatever is given back.
        """
        self.tat += delta / self.rate_per_s

    def set_rate(self, now: float, rate_per_s: float, capacity: float) -> None:
        """Change the refill rate and capacity at `now`, keeping what is owed to the bucket."""
        if not (rate_per_s > 0 and capacity > 0):
            msg = f"rate_per_s={rate_per_s} and capacity={capacity} must be > 0"
            raise ValueError(msg)
        owed = max(self.tat - now, 0.0) * self.rate_per_s  # units below full
        self.tat = now + owed / rate_per_s if owed > 0 else min(self.tat, now)
        self.rate_per_s = rate_per_s
        self.capacity = capacity
