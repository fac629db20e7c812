"""Adaptive policies, pure: a timeout that follows the latency, a concurrency that finds capacity.

`AutoTimeout`: per-attempt timeout = ``multiplier x p95`` of recent successful latencies, at least
`min_s`, at most `max_s`; `initial_s` until `warmup` samples are in. A hung request then costs a
small multiple of the normal latency rather than a fixed large timeout.

`AdaptiveConcurrency`: additive increase, multiplicative decrease with a latency gradient, after
TCP Vegas and Netflix's concurrency-limits "Gradient" limit: while the short-term latency stays
near the long-term baseline, the limit grows by about one per round of calls; when latency
inflates (a queue is forming upstream), the limit is scaled by the ratio baseline / current;
a 429, a 503 or a timeout halves it. It always stays within ``[min_limit, max_limit]``.
"""

from __future__ import annotations

import math
from collections import deque

from ..errors import ConfigError

__all__ = ["AdaptiveConcurrency", "AutoTimeout"]


class AutoTimeout:
    """The per-attempt timeout that follows the observed latency distribution."""

    __slots__ = (
        "_current",
        "_samples",
        "_since",
        "initial_s",
        "max_s",
        "min_s",
        "multiplier",
        "warmup",
    )

    def __init__(
        self,
        *,
        initial_s: float = 30.0,
        multiplier: float = 4.0,
        min_s: float = 0.05,
        max_s: float = 300.0,
        warmup: int = 20,
        window: int = 500,
    ) -> None:
        self.initial_s = initial_s
        self.multiplier = multiplier
        self.min_s = min_s
        self.max_s = max_s
        self.warmup = warmup
        self._samples: deque[float] = deque(maxlen=window)
        self._since = 0
        self._current: float | None = None

    @property
    def warm(self) -> bool:
        """Whether enough samples are in for the estimate."""
        return self._current is not None

    def timeout_s(self) -> float:
        """The timeout to give an attempt starting now."""
        return self._current if self._current is not None else self.initial_s

    def observe_timeout(self, limit_s: float) -> bool:
        """Record an attempt cut at `limit_s`; return whether the timeout changed.

        The cut attempt took at least the limit, so it counts as a sample of the limit and the
        estimate is renewed at once: when the API slows down for good, timeouts raise the p95
        until the timeout fits the new latency again.
        """
        self._samples.append(limit_s)
        if len(self._samples) < self.warmup:
            return False
        self._since = self.warmup  # renew now
        return self._renew()

    def _renew(self) -> bool:
        """Renew the estimate from the samples held."""
        n = len(self._samples)
        ordered = sorted(self._samples)
        p95 = ordered[min(n - 1, math.ceil(0.95 * n) - 1)]
        new = min(max(self.multiplier * p95, self.min_s), self.max_s)
        changed = new != self._current
        self._current = new
        self._since = 0
        return changed

    def observe(self, latency_s: float) -> bool:
        """Record a successful attempt's latency; return whether the timeout changed."""
        self._samples.append(latency_s)
        self._since += 1
        n = len(self._samples)
        if n < self.warmup or (self._current is not None and self._since < self.warmup):
            return False
        return self._renew()


class AdaptiveConcurrency:
    """A concurrency limit that rises while latency holds and falls on overload."""

    __slots__ = (
        "_baseline_s",
        "_hold",
        "_limit",
        "_mins",
        "_recent_s",
        "_seq",
        "history",
        "max_limit",
        "min_limit",
        "tolerance",
    )

    def __init__(
        self,
        *,
        min_limit: int = 1,
        max_limit: int = 100,
        initial: int | None = None,
        tolerance: float = 1.5,
        history: int = 2000,
    ) -> None:
        if not (1 <= min_limit <= max_limit):
            msg = f"bounds min={min_limit}, max={max_limit}: need 1 <= min <= max"
            raise ConfigError(msg)
        self.min_limit = min_limit
        self.max_limit = max_limit
        self.tolerance = tolerance
        start = initial if initial is not None else min(max(min_limit, 4), max_limit)
        self._limit = float(start)
        self.history = history
        self._hold = 0  # calls to wait before the next decrease
        self._mins: deque[tuple[int, float]] = deque()
        self._seq = 0
        self._baseline_s: float | None = None  # no-load latency: the windowed minimum
        self._recent_s: float | None = None  # short-term latency

    @property
    def limit(self) -> int:
        """The concurrency allowed now."""
        return max(self.min_limit, min(self.max_limit, int(self._limit)))

    def on_success(self, latency_s: float, in_flight: int) -> None:
        """A call succeeded in `latency_s`, with `in_flight` calls running when it ended."""
        # The baseline is the no-load latency: the least latency of the last `history`
        # samples (as TCP Vegas's BaseRTT and BBR's windowed min RTT), kept with a monotonic
        # deque. A queue that builds up slowly is still seen as one, yet a real change in the
        # API's speed is followed after `history` calls.
        self._seq += 1
        mins = self._mins
        while mins and mins[-1][1] >= latency_s:
            mins.pop()
        mins.append((self._seq, latency_s))
        if mins[0][0] <= self._seq - self.history:
            mins.popleft()
        self._baseline_s = mins[0][1]
        if self._recent_s is None:
            self._recent_s = latency_s
        else:
            self._recent_s += 0.2 * (latency_s - self._recent_s)
        if self._hold:
            self._hold -= 1
        if self._recent_s > self.tolerance * self._baseline_s:
            if not self._hold:
                # Latency inflation: a queue is forming. Scale down by the gradient, then let
                # a round of calls (as many as the new limit) show the effect before the next
                # decrease, as TCP decreases at most once per round trip.
                gradient = max(0.5, self._baseline_s / self._recent_s)
                self._limit = max(self.min_limit, self._limit * gradient)
                self._hold = self.limit
        elif in_flight >= self.limit - 1:
            # Only grow when the limit is actually used: about +1 per round of `limit` calls.
            self._limit = min(self.max_limit, self._limit + 1.0 / max(self._limit, 1.0))

    def on_overload(self) -> None:
        """The server pushed back (429, 503, a timeout): halve the limit, once per round."""
        if self._hold:
            self._hold -= 1
            return
        self._limit = max(float(self.min_limit), self._limit * 0.5)
        self._hold = self.limit
