"""What a limiter learns from its calls: pauses, quota, stated limits, dating, breaker, concurrency.

Admission (`conveyor.limits.limiter`) decides who goes now from the constraints and the
waiting queue; this module changes what admission works with, from what each call taught:

- an answer's rate-limit headers (`observe_headers`): a limit the API states below ours is
  adopted at once, for the dimension it names; what the API says is left of a budget we do
  not limit ourselves holds calls to it (`ServerCap`);
- a failure (`failed`), classified by `conveyor.policy.classify` (or the user's classifier):
  a rate limit or an overload pauses every sharer for the wait it names; a used-up quota or
  spend cap halts the limiter; other retryable failures count toward the circuit breaker;
- a success: the breaker closes, adaptive concurrency follows the latency;
- when the answer came: in window shape, a call the API saw late is dated by its answer
  (`conveyor.policy.answer_dating`);
- when the request went out: in bucket shape, buckets count a call let in from a full bucket
  as reaching the API as late as calls lately did (`conveyor.policy.lateness`).
"""

from __future__ import annotations

import asyncio
import math
from typing import TYPE_CHECKING, Any, Protocol

from .. import _clock
from ..errors import CircuitOpen, InvalidAnswer, QuotaExhausted
from ..policy.answer_dating import AnswerDating
from ..policy.classify import classify
from ..policy.lateness import SendLateness
from .constraints import BUCKET_LATE_S, WINDOW_MARGIN, Constraint, ServerCap

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..policy.adaptive import AdaptiveConcurrency
    from ..policy.breaker import CircuitBreaker
    from ..policy.classify import Verdict
    from .spec import LimiterConfig

__all__ = ["Learning", "LearningListener"]


class LearningListener(Protocol):
    """What admission hears of learning, as it is learned.

    A backend that holds its state elsewhere (Redis) passes each change on to every process;
    the local one reads most of it from `Learning` directly.
    """

    def changed(self) -> None:
        """Something admission depends on changed (a wait may be shorter now)."""
        ...

    def halted(self, error: QuotaExhausted) -> None:
        """The quota is exhausted: fail every waiting caller with `error`."""
        ...

    def paused(self, seconds: float) -> None:
        """The API asked everyone to wait `seconds` from now."""
        ...

    def capped(self, dim: str, cap: ServerCap) -> None:
        """The API said what is left of `dim`'s budget (`cap`)."""
        ...

    def adopted(self, constraint: Constraint, limit: float) -> None:
        """`constraint` now holds the API's stricter `limit` (per its rate's period)."""
        ...


class _Nobody:
    """The listener until a limiter's admission is set up."""

    def changed(self) -> None: ...
    def halted(self, error: QuotaExhausted) -> None: ...
    def paused(self, seconds: float) -> None: ...
    def capped(self, dim: str, cap: ServerCap) -> None: ...
    def adopted(self, constraint: Constraint, limit: float) -> None: ...


class Learning:
    """The learning half of a limiter; see the module docstring."""

    def __init__(
        self,
        config: LimiterConfig,
        constraints: list[Constraint],
        *,
        breaker: CircuitBreaker | None,
        adaptive: AdaptiveConcurrency | None,
        classifier: Callable[..., Verdict] | None,
    ) -> None:
        self._name = config.name
        self._costed = config.costed
        self._constraints = constraints
        self.breaker = breaker
        self.adaptive = adaptive
        #: The classifier given to the limiter, or None (the built-in one).
        self.classifier = classifier
        self._classify = classifier if classifier is not None else classify
        #: Who hears of what is learned: the limiter's admission.
        self.listener: LearningListener = _Nobody()
        window_s = config.window_s
        self.dating = (
            AnswerDating(window_s=window_s, margin_s=window_s * WINDOW_MARGIN)
            if window_s is not None
            else None
        )
        #: How late calls went out after they were let in (bucket shape only).
        self.lateness = SendLateness() if config.shape == "bucket" else None
        self._late_s = BUCKET_LATE_S
        self.paused_until = -math.inf
        self.server_caps: dict[str, ServerCap] = {}
        self.pushbacks = 0  # rate limits and overloads seen
        #: The same, by the classifier's kind: ``rate_limited`` or ``overloaded`` -> count.
        self.pushbacks_by_kind: dict[str, int] = {}
        #: What the API's headers last said is left, per dimension (as stated, unadjusted).
        self.stated_remaining: dict[str, float] = {}
        self.halted: QuotaExhausted | None = None
        #: Limits adopted from what the API stated: dimension -> (ours before, theirs).
        self.adopted: dict[str, tuple[float, float]] = {}

    # -- a call's life --------------------------------------------------------------------

    def started(self, now: float) -> None:
        """A call was admitted at `now`."""
        if self.dating is not None:
            self.dating.admitted(now)
        if self.breaker is not None:
            self.breaker.on_start(now)

    def sent(self, delay_s: float) -> None:
        """A call's request went out `delay_s` after it was let in (bucket shape: learned)."""
        lateness = self.lateness
        if lateness is None:
            return
        lateness.observe(delay_s)
        late_s = lateness.allowance_s(floor_s=BUCKET_LATE_S)
        if late_s != self._late_s:
            self._late_s = late_s
            for constraint in self._constraints:
                constraint.set_late(late_s)

    def answer_date(self, admitted_at: float, answered_at: float, *, ok: bool) -> float | None:
        """The date a call gets now that its answer came, or None (kept); window shape only."""
        if self.dating is None:
            return None
        return self.dating.date(admitted_at, answered_at, ok=ok)

    def succeeded(self, latency_s: float | None, in_flight: int) -> None:
        """A call succeeded after `latency_s`, with `in_flight` calls out at the time."""
        if self.breaker is not None:
            self.breaker.on_success(_clock.now())
        if self.adaptive is not None and latency_s is not None:
            self.adaptive.on_success(latency_s, in_flight)

    def failed(
        self, error: BaseException, *, sent_at: float | None, admitted_since: Callable[..., float]
    ) -> None:
        """Learn from a failed call (see the module docstring)."""
        if isinstance(error, asyncio.CancelledError | CircuitOpen):
            return
        now = _clock.now()
        verdict = self._classify(error, now_wall_s=_clock.wall())
        if verdict.kind == "quota":
            self.halt(verdict.reason)  # the classifier's reading: what the API said
            return
        pushback = verdict.kind in ("rate_limited", "overloaded")
        if (pushback or isinstance(error, TimeoutError)) and self.adaptive is not None:
            self.adaptive.on_overload()
        if pushback:
            self.pushbacks += 1
            kinds = self.pushbacks_by_kind
            kinds[verdict.kind] = kinds.get(verdict.kind, 0) + 1
            if verdict.retry_after_s is not None:
                self.pause_for(verdict.retry_after_s)
        # An answer that fails its check came from a healthy API: not a failure of it.
        elif (
            self.breaker is not None and verdict.retryable and not isinstance(error, InvalidAnswer)
        ):
            self.breaker.on_failure(now)
        headers = getattr(error, "headers", None) or getattr(
            getattr(error, "response", None), "headers", None
        )
        if headers is not None:
            self.observe_headers(headers, sent_at=sent_at, admitted_since=admitted_since)

    def halt(self, message: str = "") -> None:
        """Admit no more calls: the API's quota is exhausted (`message` is what it said)."""
        if self.halted is None:
            self.halted = QuotaExhausted(self._name, message)
        self.listener.halted(self.halted)

    def pause_for(self, seconds: float) -> None:
        """Admit no one for `seconds` (the API said "retry after")."""
        if seconds > 0:
            self.paused_until = max(self.paused_until, _clock.now() + seconds)
            self.listener.paused(seconds)

    # -- headers --------------------------------------------------------------------------

    def observe_headers(
        self, headers: Any, *, sent_at: float | None, admitted_since: Callable[..., float]
    ) -> None:
        """Learn from an answer's rate-limit headers, per dimension.

        A limit the API states below ours (per the same period, beyond the API's rounding
        down to whole numbers) becomes ours from now on, for that dimension. Where the API's
        limit is no stricter than ours, its "remaining" adds nothing but noise (rounded, and
        counted by an algorithm no header names) and is not used. Otherwise (a stricter limit,
        none of ours, or none stated) the newest "remaining" holds too: it was true when the
        API saw the call, about `sent_at`; what we admitted since is taken off it, and an
        OpenAI or Anthropic budget refills evenly from then until its reset (a token bucket),
        any other comes back whole at its reset (a fixed window).
        """
        from ..policy.ratelimit_headers import parse_rate_limit_headers  # noqa: PLC0415

        info = parse_rate_limit_headers(headers, now_wall_s=_clock.wall())
        now = _clock.now()
        for dim, budget in info.budgets.items():
            if budget.remaining is not None:
                self.stated_remaining[dim] = budget.remaining  # shown to operators (metrics)
            if dim != "requests" and dim not in self._costed:
                continue  # no call says its cost in it: nothing to hold them to
            if budget.limit is not None:
                period = budget.period_s
                stricter = [
                    self._adopt(c, budget.limit, period, now)
                    for c in self._constraints
                    if c.unit == dim
                ]
                if stricter and not any(stricter):
                    continue  # ours is as strict: the API's figures add nothing
            if budget.remaining is None or not budget.reset_s:
                continue
            since = sent_at if sent_at is not None else now
            remaining = max(budget.remaining - admitted_since(dim, since), 0.0)
            refill = 0.0
            if budget.refills and budget.limit and budget.limit > budget.remaining:
                refill = (budget.limit - budget.remaining) / budget.reset_s
            # The reset is counted from the answer: a fixed window is never taken as back early.
            cap = self.server_caps[dim] = ServerCap(
                dim, remaining, now + budget.reset_s, since=since, refill_per_s=refill
            )
            self.listener.capped(dim, cap)
        self.listener.changed()

    def _adopt(
        self, constraint: Constraint, stated: float, period_s: float | None, now: float
    ) -> bool:
        """Hold `constraint` to the API's `stated` limit per `period_s` if it is stricter.

        Returns whether it was stricter.

        APIs state whole numbers, rounded down (500 a minute over a 1 s window is 8 a second,
        not 8.33): a figure that is ours rounded down is ours, not a stricter limit. With no
        period stated, the figure is compared with a window's share, the one period we know.
        """
        rate = constraint.rate
        if period_s is None:
            if constraint.window is None or constraint.window_s is None:
                return True  # not comparable: the API's figures hold as they are
            period_s = constraint.window_s
        ours = rate.limit * period_s / rate.period_s
        if stated >= math.floor(ours + 1e-9) - 1e-9 or stated <= 0:
            return False
        new_limit = stated * rate.period_s / period_s
        before = self.adopted.get(constraint.unit, (rate.limit, 0.0))[0]
        constraint.set_limit(now, new_limit)  # at least one call a window or bucket
        self.adopted[constraint.unit] = (before, constraint.rate.limit)
        self.listener.adopted(constraint, constraint.rate.limit)
        return True
