"""The strict sliding window: the mock API's rate-limit arithmetic, pure (``now`` is passed in).

The window remembers every admitted request as (expiry, cost), where expiry is the admission
time plus `window_s`. A request arriving at ``now`` is admitted only if, counting the entries that
have not expired (expiry > now), one more request stays within `max_requests` and its cost stays
within `max_tokens`. Checking at every arrival is enough for the strict guarantee: a half-open
window ``[t, t + window_s)`` holds at most the shares, for every ``t``, because the last request
admitted inside it saw all the others still unexpired when it was checked.

This is a sliding *log* (every admission remembered), not a token bucket or GCRA: it allows a
burst of a whole share at once, then nothing until the oldest entries age out, which is the
harshest limit a client can meet and the one a client must not exceed even briefly.

A rejection says exactly when the request would fit if nothing else arrived: the moment enough
of the oldest entries have expired (the k-th oldest expires at its own stored expiry, found by
index for requests and by bisection over cumulative costs for tokens).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

from ..policy.bucket import require_positive

__all__ = ["Admission", "ServerWindow"]


@dataclass(frozen=True, slots=True)
class Admission:
    """The answer to one request, and the state the rate-limit headers report.

    Attributes:
        admitted: whether the request may go ahead (it is then counted in the window).
        retry_after_s: 0 when admitted; otherwise the seconds until it would be admitted if
            nothing else arrived, or ``math.inf`` when its cost alone exceeds the token share
            (it will never fit: a client error, not a rate limit).
        remaining_requests: requests the window would still admit now (None: no request limit).
        remaining_tokens: tokens the window would still admit now (None: no token limit).
        reset_s: seconds until every entry now in the window has expired (the window is full
            again); the same for requests and tokens, since every request costs tokens.
    """

    admitted: bool
    retry_after_s: float
    remaining_requests: int | None
    remaining_tokens: int | None
    reset_s: float

    @property
    def never(self) -> bool:
        """Return whether the request can never be admitted (its cost exceeds the share)."""
        return math.isinf(self.retry_after_s)


_UNLIMITED = Admission(
    admitted=True, retry_after_s=0.0, remaining_requests=None, remaining_tokens=None, reset_s=0.0
)


class ServerWindow:
    """At most `max_requests` requests and `max_tokens` tokens in any `window_s` seconds.

    Times are seconds on any monotonic clock, passed in; they must not go backwards. Costs are
    whole tokens >= 1.

    >>> window = ServerWindow(window_s=60.0, max_requests=2, max_tokens=None)
    >>> [window.try_admit(t, cost=1).admitted for t in (0.0, 1.0, 2.0)]
    [True, True, False]
    >>> window.try_admit(2.0, cost=1).retry_after_s  # the entry of t=0 expires at t=60
    58.0
    """

    def __init__(
        self, *, window_s: float, max_requests: int | None, max_tokens: int | None
    ) -> None:
        require_positive(
            window_s, f"ServerWindow(window_s={window_s!r}): window_s must be > 0 seconds"
        )
        for name, share in (("max_requests", max_requests), ("max_tokens", max_tokens)):
            if share is not None and share < 1:
                msg = f"ServerWindow({name}={share!r}): {name} must be >= 1, or None"
                raise ValueError(msg)
        self.window_s = window_s
        self.max_requests = max_requests
        self.max_tokens = max_tokens
        # Entries live in two parallel lists from index `_head` on; expired ones are skipped by
        # moving `_head`, and the lists are compacted once most entries are dead. `_cum[i]` is the
        # total cost admitted up to and including entry i, so a run of entries costs a
        # difference of two sums and the token retry time is a bisection.
        self._expiry: list[float] = []
        self._cum: list[int] = []
        self._head = 0
        self._total = 0
        self._expired_total = 0
        self._last_now = -math.inf
        self._tracking = max_requests is not None or max_tokens is not None

    def try_admit(self, now: float, cost: int) -> Admission:
        """Admit a request of `cost` tokens at `now` if it fits; say when it would otherwise."""
        if now < self._last_now:
            msg = f"try_admit(now={now!r}): time went backwards from {self._last_now!r}"
            raise ValueError(msg)
        if cost < 1:
            msg = f"try_admit(cost={cost!r}): a request costs at least 1 token"
            raise ValueError(msg)
        self._last_now = now
        if not self._tracking:
            return _UNLIMITED
        if self.max_tokens is not None and cost > self.max_tokens:
            return self._decision(now, admitted=False, retry_after_s=math.inf)
        self._expire(now)
        live = len(self._expiry) - self._head
        tokens = self._total - self._expired_total
        fits_requests = self.max_requests is None or live + 1 <= self.max_requests
        fits_tokens = self.max_tokens is None or tokens + cost <= self.max_tokens
        if fits_requests and fits_tokens:
            self._total += cost
            self._expiry.append(now + self.window_s)
            self._cum.append(self._total)
            return self._decision(now, admitted=True, retry_after_s=0.0)
        return self._decision(now, admitted=False, retry_after_s=self._wait_s(now, live, cost))

    def usage(self, now: float) -> Admission:
        """Return the window's state at `now` without admitting anything (for headers)."""
        if self._tracking and now >= self._last_now:
            self._last_now = now
            self._expire(now)
        return self._decision(now, admitted=False, retry_after_s=0.0)

    def reset(self) -> None:
        """Forget every admitted request (the window is full again)."""
        self._expiry.clear()
        self._cum.clear()
        self._head = 0
        self._total = 0
        self._expired_total = 0

    def _expire(self, now: float) -> None:
        expiry, head = self._expiry, self._head
        end = len(expiry)
        while head < end and expiry[head] <= now:
            head += 1
        if head != self._head:
            self._expired_total = self._cum[head - 1]
            self._head = head
            if head > 1024 and head * 2 > end:
                del expiry[:head]
                del self._cum[:head]
                self._head = 0

    def _wait_s(self, now: float, live: int, cost: int) -> float:
        """Return the seconds until `cost` fits, given that it does not fit now."""
        retry_at = now
        if self.max_requests is not None and live + 1 > self.max_requests:
            # The oldest `live + 1 - max_requests` entries must expire.
            retry_at = self._expiry[self._head + live - self.max_requests]
        if self.max_tokens is not None:
            # Entries up to index j expired leave `total - cum[j]`; the first j with
            # cum[j] >= total - max_tokens + cost is the one whose expiry makes room.
            need = self._total - self.max_tokens + cost
            if need > self._expired_total:
                j = bisect.bisect_left(self._cum, need, lo=self._head)
                retry_at = max(retry_at, self._expiry[j])
        return _seconds_until(now, retry_at)

    def _decision(self, now: float, *, admitted: bool, retry_after_s: float) -> Admission:
        live = len(self._expiry) - self._head
        tokens = self._total - self._expired_total
        return Admission(
            admitted=admitted,
            retry_after_s=retry_after_s,
            remaining_requests=None if self.max_requests is None else self.max_requests - live,
            remaining_tokens=None if self.max_tokens is None else self.max_tokens - tokens,
            reset_s=max(0.0, self._expiry[-1] - now) if live else 0.0,
        )


def _seconds_until(now: float, at: float) -> float:
    """Return ``at - now``, nudged up by the last rounding if needed so that ``now + d >= at``.

    ``at - now`` may round one unit short, and a client that waits exactly the answer must then
    be admitted, not told to wait a few more nanoseconds.
    """
    delay = at - now
    while now + delay < at:
        delay = math.nextafter(delay, math.inf)
    return delay
