"""`Limiter`: the limits of one API, shared by every task, run and job that calls it.

The arithmetic lives in `conveyor.policy` (exact sliding windows, GCRA pacing, the circuit
breaker, adaptive concurrency); this module only queues callers and waits.

Callers are served first come, first served: the head of the queue is admitted as soon as every
constraint allows it, and the ones behind it wait their turn. A large request therefore cannot
be starved by a stream of small ones, and no caller spins: one "pump" task sleeps exactly until
the head fits, or until something changes (a slot released, a cost refunded).
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from typing import TYPE_CHECKING, Any, Literal

from .. import _clock
from ..errors import CircuitOpen, ConfigError, InvalidAnswer, QuotaExhausted
from ..policy.answer_dating import AnswerDating
from ..policy.breaker import CircuitBreaker
from ..policy.classify import classify
from ..policy.llm_errors import api_error_fields
from ..policy.retry import is_transient
from .config import check_window, collect_rates, concurrency_policy
from .constraints import (
    BURST_SPREAD,
    PACED_MARGIN,
    REFILLING_SOURCES,
    WINDOW_MARGIN,
    Constraint,
    ServerCap,
)
from .slot import Acquire, Slot

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..policy.rates import Rate
    from ..policy.window import Entry

__all__ = ["BURST_SPREAD", "LOOKAHEAD", "PACED_MARGIN", "WINDOW_MARGIN", "Limiter", "Slot"]


#: How many callers behind the head may pass it when they fit and it does not (exact mode).
LOOKAHEAD = 32


class Limiter:
    """The limits of one API, shared by every caller.

    Args:
        name: names the limiter in errors and summaries (``"openai"``).
        requests_per_minute, requests_per_second, tokens_per_minute, tokens_per_second:
            the usual rates; any combination, all enforced together.
        rates: more rates, for other periods: ``[Rate(10_000, per="day")]``.
        concurrency: calls in flight at most through this limiter, or ``"auto"`` to find the
            API's capacity (within `concurrency_bounds`) from latency and push-back.
        window_s: the window the API enforces its limits over, if known (OpenAI enforces
            per-minute limits over about a second: ``window_s=1``). Then the limiter is exact
            for it: no such window ever admits more than its share, ``limit * window_s /
            period``. Unknown (``None``): admissions are spread evenly over the period.
        burst: with `window_s` unknown, how many units may go at once before pacing applies.
        breaker: a `CircuitBreaker` (``None``: the default one; ``False``: none).

    Bad values fail here with `ConfigError`, naming the argument and the fix.
    """

    def __init__(
        self,
        name: str,
        *,
        requests_per_minute: float | None = None,
        requests_per_second: float | None = None,
        tokens_per_minute: float | None = None,
        tokens_per_second: float | None = None,
        rates: Sequence[Rate] = (),
        concurrency: int | Literal["auto"] | None = None,
        concurrency_bounds: tuple[int, int] = (1, 100),
        window_s: float | None = None,
        burst: float = 0.0,
        breaker: CircuitBreaker | Literal[False] | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            msg = f"Limiter(name={name!r}): give the limiter a name, e.g. the API's ('openai')"
            raise ConfigError(msg)
        self.name = name
        all_rates = collect_rates(
            name,
            rates,
            requests_per_minute=requests_per_minute,
            requests_per_second=requests_per_second,
            tokens_per_minute=tokens_per_minute,
            tokens_per_second=tokens_per_second,
        )
        check_window(name, window_s, burst, all_rates)
        self.rates = tuple(all_rates)
        self.window_s = window_s
        # Calls dated by their answers when these say the API saw them late (exact mode).
        self._dating = (
            AnswerDating(window_s=window_s, margin_s=window_s * WINDOW_MARGIN)
            if window_s is not None
            else None
        )
        self._constraints = [Constraint(r, window_s, burst) for r in all_rates]
        self._limits_tokens = any(r.unit == "tokens" for r in all_rates)
        self._adaptive, self._max_in_flight = concurrency_policy(
            name, concurrency, concurrency_bounds
        )
        self.breaker: CircuitBreaker | None = (
            None if breaker is False else breaker if breaker is not None else CircuitBreaker()
        )
        self._in_flight = 0
        self._paused_until = -math.inf
        self._server_caps: dict[str, ServerCap] = {}
        self._queue: deque[tuple[float, asyncio.Future[Slot], float]] = deque()
        self._pump_task: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Future[None] | None = None
        # What the limiter has seen, for summaries and progress.
        self.admitted = 0
        self.pushbacks = 0  # 429 / 503 answers seen
        #: Set once the API said its quota is exhausted: every admission then raises it.
        self.halted: QuotaExhausted | None = None

    def __repr__(self) -> str:
        rates = ", ".join(f"{r.limit:g} {r.unit}/{r.per}" for r in self.rates)
        return f"Limiter({self.name!r}, {rates or 'no rates'}, window_s={self.window_s})"

    # -- acquiring ------------------------------------------------------------------------

    def acquire(self, cost: float = 1.0) -> Acquire:
        """Wait for the right to make one call costing `cost` tokens (1 if tokens aren't limited).

        ``async with limiter.acquire(cost=estimate) as slot: ...``. Raises `CircuitOpen` at once
        if the circuit is open, and `ConfigError` for a cost no window could ever admit.
        """
        return Acquire(self, self._check_cost(cost))

    @property
    def limits_tokens(self) -> bool:
        """Whether a token rate is set (callers must then say each call's cost)."""
        return self._limits_tokens

    @property
    def concurrency_limit(self) -> int | None:
        """The concurrency allowed now (adaptive or fixed), or None for no limit."""
        if self._adaptive is not None:
            return self._adaptive.limit
        return self._max_in_flight

    @property
    def paused_until(self) -> float:
        """The loop time until which the API asked everyone to wait (-inf: not paused)."""
        return self._paused_until

    def _check_cost(self, cost: float) -> float:
        ok = isinstance(cost, int | float) and not isinstance(cost, bool) and math.isfinite(cost)
        if not ok or cost < 0:
            msg = f"{self.name}: cost={cost!r} must be a number >= 0 (estimated tokens)"
            raise ConfigError(msg)
        for c in self._constraints:
            if c.unit == "tokens" and cost > c.largest_cost() + 1e-9:
                msg = (
                    f"{self.name}: a call costing {cost:g} tokens can never be admitted: the"
                    f" limit allows {c.largest_cost():g} tokens per window. Split the request or"
                    " raise the limit."
                )
                raise ConfigError(msg)
        return float(cost)

    def _wait_s(self, now: float, cost: float) -> float:
        wait = self._paused_until - now
        limit = self.concurrency_limit
        if limit is not None and self._in_flight >= limit:
            return math.inf  # until a slot is released
        if self.breaker is not None:
            wait = max(wait, 0.0)  # the breaker fails fast in `admit`, it does not queue
        for c in self._constraints:
            units = cost if c.unit == "tokens" else 1.0
            wait = max(wait, c.wait_s(now, units))
        for cap in self._server_caps.values():
            wait = max(wait, cap.wait_s(now, cost if cap.unit == "tokens" else 1.0))
        return max(wait, 0.0)

    def _commit(self, now: float, cost: float) -> Slot:
        self._note_admission(now)
        entries: list[tuple[Constraint, Entry | None]] = []
        for c in self._constraints:
            units = cost if c.unit == "tokens" else 1.0
            entry = c.admit(now, units)
            entries.append((c, entry))
        for unit, cap in list(self._server_caps.items()):
            if now >= cap.until:
                del self._server_caps[unit]
            else:
                cap.remaining -= cost if unit == "tokens" else 1.0
        self._in_flight += 1
        self.admitted += 1
        if self.breaker is not None:
            self.breaker.on_start(now)
        return Slot(self, cost, now, entries)

    async def admit(self, cost: float = 1.0) -> Slot:
        """Wait until a call costing `cost` may start; return its `Slot` (release it after)."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self.halted is not None:
            raise self.halted
        if self.breaker is not None:
            wait = self.breaker.wait_s(now)
            if wait > 0:
                raise CircuitOpen(self.name, wait)
        if not self._queue and self._wait_s(now, cost) <= 0:
            return self._commit(now, cost)
        future: asyncio.Future[Slot] = loop.create_future()
        self._queue.append((cost, future, now))
        if self._pump_task is None or self._pump_task.done():
            self._pump_task = loop.create_task(self._pump(), name=f"conveyor-limiter-{self.name}")
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                # Granted just as we were cancelled: nothing was sent, give it all back.
                slot = future.result()
                self._settle(slot, 0.0)
                slot.release(sent=False)
            raise

    async def _pump(self) -> None:
        """Admit the head of the queue whenever it fits; sleep exactly until it might."""
        loop = asyncio.get_running_loop()
        queue = self._queue
        while queue:
            cost, future, queued_at = queue[0]
            if future.done():  # its caller gave up
                queue.popleft()
                continue
            now = loop.time()
            wait = self._wait_s(now, cost)
            if wait <= 0:
                queue.popleft()
                future.set_result(self._commit(now, cost))
                continue
            if self.window_s is not None and now - queued_at < self.window_s:
                wait = min(wait, self._backfill(now))
                if wait <= 0:
                    continue
            wakeup = self._wakeup = loop.create_future()
            timer = loop.call_at(now + wait, _wake, wakeup) if math.isfinite(wait) else None
            try:
                await wakeup
            finally:
                if timer is not None:
                    timer.cancel()
                self._wakeup = None

    def _backfill(self, now: float) -> float:
        """Let a cheaper caller behind the head go if it fits now; else say when one might.

        When requests and tokens both bind, strict first-come-first-served wastes budget: a
        large call waiting for tokens holds back small ones that the requests budget still has
        room for. So the first `LOOKAHEAD` callers may pass the head while it has waited less
        than one window. Each one that passes uses little of what the head waits for, and
        after a window the head goes first again: no caller waits forever.
        """
        best = math.inf
        for position in range(1, min(len(self._queue), LOOKAHEAD + 1)):
            cost, future, _ = self._queue[position]
            if future.done():
                continue
            wait = self._wait_s(now, cost)
            if wait <= 0:
                del self._queue[position]
                future.set_result(self._commit(now, cost))
                return 0.0
            best = min(best, wait)
        return best

    def _poke(self) -> None:
        wakeup = self._wakeup
        if wakeup is not None:
            _wake(wakeup)

    # -- learning -------------------------------------------------------------------------

    def _note_admission(self, now: float) -> None:
        if self._dating is not None:
            self._dating.admitted(now)

    @property
    def answer_dating(self) -> AnswerDating | None:
        """How calls are dated by their answers (exact mode), with what it moved so far."""
        return self._dating

    def answer_date(self, slot: Slot, now: float, *, ok: bool) -> float | None:
        """The date `slot`'s call gets now that its answer came (`now`), or None (kept).

        Exact mode only: a call of the first window, or one answered later than a steady
        API's fastest round trip, is dated later (`conveyor.policy.answer_dating`).
        """
        if self._dating is None:
            return None
        return self._dating.date(slot.admitted_at, now, ok=ok)

    def _settle(self, slot: Slot, cost: float) -> None:
        delta = cost - slot.settled_cost
        if not delta:
            return
        slot.settled_cost = cost
        for c, entry in slot._entries:  # noqa: SLF001
            if c.unit != "tokens":
                continue
            c.settle(entry, cost, delta)
        if delta < 0:
            self._poke()

    def _release(
        self, slot: Slot, error: BaseException | None, latency_s: float | None, *, sent_at: float
    ) -> None:
        del slot  # the Redis limiter's needs it
        self._in_flight -= 1
        now = _clock.now()
        if error is None:
            if self.breaker is not None:
                self.breaker.on_success(now)
            if self._adaptive is not None and latency_s is not None:
                self._adaptive.on_success(latency_s, self._in_flight + 1)
        elif not isinstance(error, asyncio.CancelledError | CircuitOpen):
            self.learn_from_error(error, sent_at=sent_at)
        self._poke()

    def learn_from_error(self, error: BaseException, *, sent_at: float | None = None) -> None:
        """Learn from a failed call (`conveyor.policy.classify`).

        An exhausted quota or spend cap halts the limiter. A rate limit or an overloaded
        service (429, 503, 529, an AWS throttle, Google's ``RESOURCE_EXHAUSTED``, a
        `RetryAfter` raised by the task) pauses every sharer for the wait it names, if any;
        other retryable failures count toward the breaker.
        """
        now = _clock.now()
        verdict = classify(error, now_wall_s=_clock.wall())
        if verdict.kind == "quota":
            self.halt(api_error_fields(error)[2] or verdict.reason)
            return
        pushback = verdict.kind in ("rate_limited", "overloaded")
        overloaded = pushback or isinstance(error, TimeoutError)
        if overloaded and self._adaptive is not None:
            self._adaptive.on_overload()
        if pushback:
            self.pushbacks += 1
            if verdict.retry_after_s is not None:
                self.pause_for(verdict.retry_after_s)
        # An answer that fails its check came from a healthy API: not a failure of it.
        elif (
            self.breaker is not None
            and is_transient(error)
            and not isinstance(error, InvalidAnswer)
        ):
            self.breaker.on_failure(now)
        headers = getattr(error, "headers", None) or getattr(
            getattr(error, "response", None), "headers", None
        )
        if headers is not None:
            self.observe_headers(headers, sent_at=sent_at)

    def halt(self, message: str = "") -> None:
        """Admit no more calls: the API's quota is exhausted (`message` is what it said).

        Every caller waiting, and every later one, gets `QuotaExhausted` at once: waiting
        would never help, and retrying would only spend the calls the account no longer has.
        """
        if self.halted is None:
            self.halted = QuotaExhausted(self.name, message)
        while self._queue:
            _, future, _ = self._queue.popleft()
            if not future.done():
                future.set_exception(self.halted)
        self._poke()

    def pause_for(self, seconds: float) -> None:
        """Stop admitting anyone for `seconds` (the API said "retry after")."""
        if seconds > 0:
            self._paused_until = max(self._paused_until, _clock.now() + seconds)

    def observe_headers(self, headers: Any, *, sent_at: float | None = None) -> None:
        """Hold calls to what the server says is left, where our own limits do not cover it.

        A budget whose stated limit is no larger than one of ours for the same unit is left
        to our own limit (exact, and no header says how the server's budget comes back).
        Otherwise the newest figure holds: the server counted everything sent before it
        answered, so calls admitted here after `sent_at` are taken off what it says is left;
        an OpenAI or Anthropic budget then refills evenly until its reset (a token bucket),
        any other comes back whole at its reset (a fixed window). Our own limits always
        apply as well: a header never raises the budget above them.
        """
        from ..policy.ratelimit_headers import parse_rate_limit_headers  # noqa: PLC0415

        info = parse_rate_limit_headers(headers, now_wall_s=_clock.wall())
        now = _clock.now()
        refills = info.source in REFILLING_SOURCES
        for unit, budget in (("requests", info.requests), ("tokens", info.tokens)):
            if budget is None or budget.remaining is None or not budget.reset_s:
                continue
            if budget.limit is not None and self._keeps_within(unit, budget.limit):
                continue
            since = sent_at if sent_at is not None else now
            unseen = self._admitted_since(unit, since)
            remaining = max(budget.remaining - unseen, 0.0)
            until = now + budget.reset_s
            refill = 0.0
            if refills and budget.limit is not None and budget.limit > budget.remaining:
                refill = (budget.limit - budget.remaining) / budget.reset_s
            self._server_caps[unit] = ServerCap(
                unit, remaining, until, since=now, refill_per_s=refill
            )

    def _keeps_within(self, unit: str, server_limit: float) -> bool:
        """Whether a rate of ours for `unit` is already as strict as the server's `limit`.

        Then the server's figures add nothing but noise: its "remaining" is what our own
        pacing leaves, and how it comes back depends on the server's algorithm, which a header
        does not say (a strict sliding window frees a burst all at once, a token bucket
        evenly). The server's limit is per its own period, so ours is compared both as a
        window's share and as a per-period limit; a stricter server still shows in 429s.
        APIs state whole numbers, rounded down (500 a minute is 8 a second, not 8.33): a
        figure that is ours rounded down is ours, not a stricter limit.
        """
        for c in self._constraints:
            if c.unit != unit:
                continue
            ours = c.window.share if c.window is not None else c.rate.limit
            if server_limit >= math.floor(ours + 1e-9) - 1e-9:
                return True
        return False

    def _admitted_since(self, unit: str, since: float) -> float:
        for c in self._constraints:
            if c.unit == unit and c.window is not None:
                return c.window.cost_since(since)
        return 0.0


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
