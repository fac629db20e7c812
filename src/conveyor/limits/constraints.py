"""One limiter's constraints: a rate in one shape, and what the server said is left.

The arithmetic is in `conveyor.policy` (`window`, `gcra`); this module combines it per rate and
holds the safety margins, which are documented in docs/explanations/limits.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from ..policy.bucket import TokenBucket
from ..policy.gcra import Gcra
from ..policy.rates import Rate
from ..policy.window import Entry, SlidingWindow

if TYPE_CHECKING:
    from ..policy.output_estimate import OutputEstimate
    from .spec import LimiterConfig

__all__ = [
    "BUCKET_MARGIN",
    "BURST_SPREAD",
    "DEBT_DIMENSIONS",
    "PACED_MARGIN",
    "SPREAD_ROOM",
    "WINDOW_MARGIN",
    "Constraint",
    "ServerCap",
    "Shape",
]

#: Paced mode books each unit this much longer than limit/period: a 2% margin keeps any
#: window of one period under the limit (GCRA admits up to one extra unit at the edges).
PACED_MARGIN = 0.02
#: Exact mode spreads each window's share over this fraction of the window (see _Constraint).
BURST_SPREAD = 0.05
#: Exact mode widens the enforcement window by this fraction, to absorb the difference between
#: our clock and the server's (scheduling and network jitter): 10 ms on a 1-second window.
WINDOW_MARGIN = 0.01


#: Bucket mode refills this much slower than the stated rate: 1% of a second's worth is 10 ms
#: of the scheduling and network jitter between our clock and the server's.
BUCKET_MARGIN = 0.01

#: How late the API may see a call after the limiter let it in (network and scheduling): a
#: bucket that was full takes the call as of then, since the API's, still full, wastes that
#: refill (without it, calls let in from full buckets drew 429s for input tokens).
BUCKET_LATE_S = 0.02

#: Bucket mode lets a call in only while this share of the bucket stays in it (as far as the
#: call allows): calls that a busy sender (its event loop, its machine) sends together reach
#: the API's bucket together, and 0.2 s of each rate takes them. Only a full bucket's first
#: burst is smaller; the rate is the same.
BUCKET_RESERVE = 0.2

#: A call whose output reservation is estimated from answers needs this share of the output
#: bucket's capacity among the reservations (at most its own reservation): calls let in
#: together are answered together, and what their answers take at once must fit the half
#: bucket the mirror keeps for answers written and not yet read. A reservation of the call's
#: ``max_tokens`` over-reserves enough not to need it.
SPREAD_ROOM = 0.5

#: Dimensions whose budget a call needs only to be above zero: the API counts them as the
#: answer is produced, so the call's cost may take the budget below zero (a debt).
DEBT_DIMENSIONS = frozenset({"output_tokens"})

Shape = Literal["window", "bucket", "paced"]


class Produced:
    """What a call's answer has taken from a debt bucket so far (nothing until it is settled)."""

    __slots__ = ("taken",)

    def __init__(self) -> None:
        self.taken = 0.0


class FromFull:
    """A bucket admission counted from `start`, when the bucket was full (`TokenBucket.redate`)."""

    __slots__ = ("start",)

    def __init__(self, start: float) -> None:
        self.start = start


class Constraint:
    """One rate, in one shape, for one cost dimension.

    - ``window`` (exact): the sliding window is the guarantee, paired with a fast pacer that
      spreads each window's share over `BURST_SPREAD` of the window instead of sending it all
      in the same instant. A share sent at once reaches the server as a queue, stamped over
      tens of milliseconds; the next window's share, sent exactly one window later, would then
      meet the tail of the last one. Spread out, request *i* of each window leaves one window
      after request *i* of the previous one, so the margin only has to cover network jitter.
    - ``bucket``: a token bucket refilled continuously at the rate, holding `burst_s` seconds
      of it (`conveyor.policy.bucket`), as Anthropic enforces its limits.
    - ``paced``: the window is not known: admissions spread evenly over the period (GCRA),
      `burst` units at once.
    """

    __slots__ = (
        "answers",
        "bucket",
        "burst",
        "burst_s",
        "pacer",
        "rate",
        "shape",
        "spread",
        "unit",
        "window",
        "window_s",
    )

    def __init__(
        self, rate: Rate, config: LimiterConfig, answers: OutputEstimate | None = None
    ) -> None:
        """`rate`, kept in the shape `config` gives (its window, buckets or burst).

        `answers`: what the limiter learns of output from answers; with output learned
        (``output_reserve="learned"``), reservations it estimates need `SPREAD_ROOM`.
        """
        self.unit = rate.unit
        self.shape: Shape = config.shape
        self.window_s = config.window_s
        self.burst_s = config.bucket_s
        self.burst = config.burst
        self.window: SlidingWindow | None = None
        self.pacer: Gcra | None = None
        self.bucket: TokenBucket | None = None
        #: With a debt bucket: the reservations, spread at the rate (`TokenBucket.mirror`).
        self.spread: TokenBucket | None = None
        self.rate = rate
        self.answers = answers if config.output_reserve == "learned" else None
        self._build(rate)

    def _build(self, rate: Rate) -> None:
        if self.shape == "window":
            assert self.window_s is not None
            share = rate.share(self.window_s)
            effective = self.window_s * (1.0 + WINDOW_MARGIN)
            self.window = SlidingWindow(share=share, window_s=effective)
            self.pacer = Gcra(limit=share, period_s=self.window_s * BURST_SPREAD)
        elif self.shape == "bucket":
            assert self.burst_s is not None
            per_s = rate.limit / rate.period_s
            debt = self.unit in DEBT_DIMENSIONS
            self.bucket = TokenBucket(
                rate_per_s=per_s * (1.0 - BUCKET_MARGIN),
                capacity=per_s * self.burst_s,
                debt=debt,
                late_s=BUCKET_LATE_S,
                reserve=BUCKET_RESERVE,
            )
            if debt:
                self.spread = TokenBucket(
                    rate_per_s=per_s * (1.0 - BUCKET_MARGIN),
                    capacity=per_s * self.burst_s,
                    debt=True,
                    mirror=False,
                )
        else:
            limit = rate.limit * (1.0 - PACED_MARGIN)
            self.pacer = Gcra(limit=limit, period_s=rate.period_s, burst=self.burst)

    def set_limit(self, now: float, limit: float) -> None:
        """Hold this dimension to `limit` per period from `now` (the API stated less).

        What was admitted stays booked: a window keeps its log, a bucket its level. A limit of
        requests too low for one call in a window or a bucket is raised to one: the API's
        own 429s then pace the calls, where the limiter would otherwise admit none ever.
        """
        if self.unit == "requests":
            span = self.rate.period_s  # paced: what one period admits
            if self.window is not None and self.window_s is not None:
                span = self.window_s
            elif self.bucket is not None and self.burst_s is not None:
                span = self.burst_s
            limit = max(limit, self.rate.period_s / span)
        rate = Rate(limit, per=self.rate.per, unit=self.unit)
        self.rate = rate
        if self.window is not None and self.window_s is not None:
            self.window.share = rate.share(self.window_s)
            assert self.pacer is not None
            self.pacer.interval_s = self.window_s * BURST_SPREAD / self.window.share
        elif self.bucket is not None and self.burst_s is not None:
            per_s = limit / rate.period_s
            for bucket in (self.bucket, self.spread):
                if bucket is not None:
                    bucket.set_rate(now, per_s * (1.0 - BUCKET_MARGIN), per_s * self.burst_s)
        else:
            assert self.pacer is not None
            tolerance_units = self.pacer.tolerance_s / self.pacer.interval_s
            self.pacer.interval_s = rate.period_s / (limit * (1.0 - PACED_MARGIN))
            self.pacer.tolerance_s = tolerance_units * self.pacer.interval_s

    def set_late(self, late_s: float) -> None:
        """Count a call let in from a full bucket as reaching the API `late_s` later.

        Only buckets that take a call's cost when it arrives (requests, input tokens): output
        is taken when the answer is written.
        """
        if self.bucket is not None and not self.bucket.debt:
            self.bucket.late_s = late_s

    def largest_cost(self) -> float:
        """The largest cost one call may have (a window's share, a bucket's capacity)."""
        if self.window is not None:
            return self.window.share
        if self.bucket is not None:
            return self.bucket.largest_cost()
        return self.rate.limit

    def room(self) -> float:
        """The share of the capacity a call needs among the spread reservations (`SPREAD_ROOM`).

        Only reservations estimated from answers (or a first guess) need it: one that is a
        call's ``max_tokens`` over-reserves, and needs the spread above zero.
        """
        answers = self.answers
        return SPREAD_ROOM if answers is not None and answers.estimate() is not None else 0.0

    def wait_s(self, now: float, units: float) -> float:
        """Seconds until `units` may be admitted."""
        if self.bucket is not None:
            wait = self.bucket.wait_s(now, units)
            if self.spread is not None:
                wait = max(wait, self.spread.wait_s(now, units, room=self.room()))
            return wait
        assert self.pacer is not None
        wait = self.pacer.wait_s(now, units)
        if self.window is not None:
            wait = max(wait, self.window.wait_s(now, units))
        return wait

    def admit(self, now: float, units: float) -> Entry | Produced | FromFull | None:
        """Book `units` at `now`; what settling or redating it later needs.

        A window's entry, a debt bucket's `Produced`, or, for a call let in from a full
        bucket, the moment it is counted from (`FromFull`).
        """
        if self.bucket is not None:
            start = self.bucket.admit(now, units)
            if self.spread is not None:
                self.spread.admit(now, units)
            if self.bucket.debt:
                return Produced()
            return None if start is None else FromFull(start)
        assert self.pacer is not None
        self.pacer.admit(now, units)
        return self.window.admit(now, units) if self.window is not None else None

    def settle(
        self, entry: Entry | Produced | FromFull | None, cost: float, delta: float, now: float
    ) -> None:
        """Replace an admission's cost by the real one (`delta` = real - estimate) at `now`.

        A debt bucket took nothing at admission: the answer's output is taken now, when the
        API wrote it (a later correction takes or gives back the difference).
        """
        if self.bucket is not None:
            if isinstance(entry, Produced):
                self.bucket.produce(now, cost - entry.taken)
                if self.spread is not None:
                    self.spread.settle(delta)
                entry.taken = cost
            else:
                self.bucket.settle(delta)
            return
        if self.window is not None and isinstance(entry, Entry):
            self.window.settle(entry, cost)
        assert self.pacer is not None
        self.pacer.settle(delta)

    def redate(self, entry: Entry | Produced | FromFull | None, now: float) -> None:
        """Count an admission from `now`, when its call went out.

        A window moves it in its log. A bucket that was full when the call was let in lost
        the refill until the call reached the API: it owes that much longer (only the call
        that found it full: the API's bucket drew on the ones after it from then on).
        """
        if isinstance(entry, Entry) and self.window is not None:
            self.window.redate(entry, now)
        elif isinstance(entry, FromFull) and self.bucket is not None:
            entry.start = self.bucket.redate(entry.start, now)

    def utilisation(self, now: float) -> float:
        """How much of this rate's budget is in use at `now`: 0 idle, 1 at the limit.

        A window: what it admitted in the last window over its share; a bucket: what is
        missing from it over its capacity; paced: what is booked ahead of `now` over what a
        caller may book ahead (one unit and the burst). Above 1, the next caller waits.
        """
        if self.window is not None:
            return self.window.used(now) / self.window.share
        if self.bucket is not None:
            return (self.bucket.capacity - self.bucket.level(now)) / self.bucket.capacity
        assert self.pacer is not None
        ahead = max(self.pacer.tat - now, 0.0)
        return ahead / (self.pacer.tolerance_s + self.pacer.interval_s)

    def admitted_since(self, since: float) -> float:
        """What a window admitted after `since` (0 for other shapes: they keep no log)."""
        return self.window.cost_since(since) if self.window is not None else 0.0


_EPS = 1e-9
_PAD_S = 1e-9


class ServerCap:
    """What the server said is left of a budget, and how it comes back.

    `remaining` was left at time `since` (less what was admitted here since); the budget then
    refills at `refill_per_s` (a token bucket) until it is full at `until`, or, with
    `refill_per_s` 0 (a fixed window), comes back whole at `until`. Reading a bucket's
    "remaining N, full in T" as "N more until T" would leave the budget unused while it
    refills: against a limit enforced over a sliding window, that halved the throughput.
    """

    __slots__ = ("refill_per_s", "remaining", "since", "unit", "until")

    def __init__(
        self,
        unit: str,
        remaining: float,
        until: float,
        *,
        since: float | None = None,
        refill_per_s: float = 0.0,
    ) -> None:
        self.unit = unit
        self.remaining = remaining
        self.until = until
        self.since = until if since is None else since
        self.refill_per_s = refill_per_s

    def available(self, now: float) -> float:
        """What may be admitted at `now` (before `until`)."""
        return self.remaining + self.refill_per_s * max(now - self.since, 0.0)

    def wait_s(self, now: float, units: float) -> float:
        """Seconds from `now` until `units` fit; 0.0 if they fit now."""
        short = units - self.available(now)
        if short <= _EPS or now >= self.until:
            return 0.0
        if self.refill_per_s > 0:
            # A hair past the exact moment, so that float rounding cannot leave it short.
            return min(short / self.refill_per_s + _PAD_S, self.until - now)
        return self.until - now
