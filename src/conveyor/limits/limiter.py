"""`Limiter`: the limits of one API, shared by every task, run and job that calls it.

A limiter is two halves. Admission (this module) queues callers and admits the head of the
queue as soon as every constraint allows it; learning (`conveyor.limits.learning`) changes
what admission works with, from what each call taught (headers, pauses, quota, answer dating,
the breaker, adaptive concurrency). The arithmetic of each constraint's shape (sliding window,
token bucket, paced) lives in `conveyor.policy`; what a call costs in each dimension, in
`conveyor.limits.costs`; the settings, in one frozen `LimiterConfig`.

The engine talks to a limiter through three verbs, as declared by `conveyor.limits.protocol`:
``admit`` (wait for the right to call; a `Slot`), the slot's notes of what happened (when it
was sent and answered, the answer's headers and usage, its error), and ``release``, which
hands those facts to learning in one place.

Callers are served first come, first served: the head of the queue is admitted as soon as every
constraint allows it, and the ones behind it wait their turn. A large request therefore cannot
be starved by a stream of small ones, and no caller spins: one "pump" task sleeps exactly until
the head fits, or until something changes (a slot released, a cost refunded).
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from typing import TYPE_CHECKING, Any, Literal, Self

from .. import _clock
from ..errors import CircuitOpen, ConfigError, QuotaExhausted
from ..policy.breaker import CircuitBreaker
from ..policy.classify import Classifier
from .config import collect_rates, concurrency_policy
from .constraints import BURST_SPREAD, PACED_MARGIN, WINDOW_MARGIN, Constraint, Produced
from .costs import Cost, CostModel
from .learning import Learning
from .slot import Acquire, Slot
from .spec import LimiterConfig

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..policy.answer_dating import AnswerDating
    from ..policy.rates import Rate
    from ..policy.window import Entry
    from .constraints import ServerCap

__all__ = ["BURST_SPREAD", "LOOKAHEAD", "PACED_MARGIN", "WINDOW_MARGIN", "Limiter", "Slot"]


#: How many callers behind the head may pass it when they fit and it does not (exact mode).
LOOKAHEAD = 32

_Waiter = tuple[dict[str, float], "asyncio.Future[Slot]", float, Cost]


class Limiter:
    """The limits of one API, shared by every caller.

    Args:
        name: names the limiter in errors and summaries (``"openai"``).
        requests_per_minute, requests_per_second, tokens_per_minute, tokens_per_second,
        input_tokens_per_minute, output_tokens_per_minute: the usual rates; any combination,
            all enforced together. Input and output tokens are separate budgets (Anthropic).
        rates: more rates, for other periods or dimensions: ``[Rate(10_000, per="day")]``.
        concurrency: calls in flight at most through this limiter, or ``"auto"`` to find the
            API's capacity (within `concurrency_bounds`) from latency and push-back.
        window_s: the API enforces its limits over a sliding window this long (OpenAI: per
            minute limits over about a second, ``window_s=1``). The limiter is then exact for
            it: no such window ever admits more than its share, ``limit * window_s / period``.
        bucket_s: the API enforces its limits as token buckets refilling continuously, each
            holding this many seconds of its rate (Anthropic: ``bucket_s=1``).
        burst: with neither known, admissions are spread evenly over the period (paced), and
            this many units may go at once.
        output_estimate: with an output-token limit, a first guess of a call's output tokens,
            for calls whose cost names no bound (``max_tokens``); answers refine it.
        output_reserve: ``"learned"`` (a call reserves what answers have produced, at most its
            bound, and is settled from its answer) or ``"bound"`` (its ``max_tokens``).
        breaker: a `CircuitBreaker` (``None``: the default one; ``False``: none).
        classifier: decides what an error means (`conveyor.Classifier`; default: the built-in).

    Bad values fail here with `ConfigError`, naming the argument and the fix. The settings
    are kept as one frozen `LimiterConfig` (`config`); `Limiter.from_config` takes one whole.
    """

    def __init__(
        self,
        name: str,
        *,
        requests_per_minute: float | None = None,
        requests_per_second: float | None = None,
        tokens_per_minute: float | None = None,
        tokens_per_second: float | None = None,
        input_tokens_per_minute: float | None = None,
        output_tokens_per_minute: float | None = None,
        rates: Sequence[Rate] = (),
        concurrency: int | Literal["auto"] | None = None,
        concurrency_bounds: tuple[int, int] = (1, 100),
        window_s: float | None = None,
        bucket_s: float | None = None,
        burst: float = 0.0,
        output_estimate: float | None = None,
        output_reserve: Literal["learned", "bound"] = "learned",
        breaker: CircuitBreaker | Literal[False] | None = None,
        classifier: Classifier | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            msg = f"Limiter(name={name!r}): give the limiter a name, e.g. the API's ('openai')"
            raise ConfigError(msg)
        all_rates = collect_rates(
            name,
            rates,
            requests_per_minute=requests_per_minute,
            requests_per_second=requests_per_second,
            tokens_per_minute=tokens_per_minute,
            tokens_per_second=tokens_per_second,
            input_tokens_per_minute=input_tokens_per_minute,
            output_tokens_per_minute=output_tokens_per_minute,
        )
        config = LimiterConfig(
            name=name,
            rates=tuple(all_rates),
            window_s=window_s,
            bucket_s=bucket_s,
            burst=burst,
            concurrency=concurrency,
            concurrency_bounds=concurrency_bounds,
            output_estimate=output_estimate,
            output_reserve=output_reserve,
        )
        self._setup(config, breaker, classifier)

    @classmethod
    def from_config(
        cls,
        config: LimiterConfig,
        *,
        breaker: CircuitBreaker | Literal[False] | None = None,
        classifier: Classifier | None = None,
    ) -> Self:
        """A limiter enforcing `config` (with its own breaker and state)."""
        if not isinstance(config, LimiterConfig):
            msg = f"Limiter.from_config({config!r}): give a conveyor.LimiterConfig"
            raise ConfigError(msg)
        limiter = cls.__new__(cls)
        limiter._setup(config, breaker, classifier)  # noqa: SLF001 - its own set-up
        return limiter

    def _setup(
        self,
        config: LimiterConfig,
        breaker: CircuitBreaker | Literal[False] | None,
        classifier: Classifier | None,
    ) -> None:
        self.config = config
        self.name = config.name
        self.window_s = config.window_s
        shape = config.shape
        self._constraints = [
            Constraint(
                r, shape, window_s=config.window_s, burst_s=config.bucket_s, burst=config.burst
            )
            for r in config.rates
        ]
        self.costs = CostModel(config)
        adaptive, self._max_in_flight = concurrency_policy(
            config.name, config.concurrency, config.concurrency_bounds
        )
        if classifier is not None and not isinstance(classifier, Classifier):
            msg = (
                f"Limiter({config.name!r}, classifier={classifier!r}): give a"
                " conveyor.Classifier(rules=[...])"
            )
            raise ConfigError(msg)
        classify_fn = classifier.classify if classifier is not None else None
        self.learning = Learning(
            config,
            self._constraints,
            breaker=None
            if breaker is False
            else breaker
            if breaker is not None
            else CircuitBreaker(),
            adaptive=adaptive,
            classifier=classify_fn,
            on_change=self._poke,
            on_halt=self._fail_waiters,
        )
        self._in_flight = 0
        self._queue: deque[_Waiter] = deque()
        self._pump_task: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Future[None] | None = None
        #: Calls admitted so far, for summaries and progress.
        self.admitted = 0

    def __repr__(self) -> str:
        rates = ", ".join(f"{r.limit:g} {r.unit}/{r.per}" for r in self.rates)
        shape = self.config.shape
        how = {"window": f"window_s={self.window_s}", "bucket": f"bucket_s={self.config.bucket_s}"}
        return f"Limiter({self.name!r}, {rates or 'no rates'}, {how.get(shape, 'paced')})"

    # -- what it is and what it learned ---------------------------------------------------

    @property
    def rates(self) -> tuple[Rate, ...]:
        """The rates enforced now (a limit the API stated lower replaces ours)."""
        return tuple(c.rate for c in self._constraints)

    @property
    def breaker(self) -> CircuitBreaker | None:
        """The circuit breaker, if any."""
        return self.learning.breaker

    @property
    def halted(self) -> QuotaExhausted | None:
        """Set once the API said its quota is exhausted: every admission then raises it."""
        return self.learning.halted

    @property
    def pushbacks(self) -> int:
        """Rate limits and overloads seen (429, 503, 529, throttles, `RetryAfter`)."""
        return self.learning.pushbacks

    @property
    def limits_tokens(self) -> bool:
        """Whether a dimension other than requests is limited (callers must say each cost)."""
        return bool(self.config.costed)

    @property
    def concurrency_limit(self) -> int | None:
        """The concurrency allowed now (adaptive or fixed), or None for no limit."""
        adaptive = self.learning.adaptive
        if adaptive is not None:
            return adaptive.limit
        return self._max_in_flight

    @property
    def paused_until(self) -> float:
        """The loop time until which the API asked everyone to wait (-inf: not paused)."""
        return self.learning.paused_until

    @property
    def _server_caps(self) -> dict[str, ServerCap]:
        return self.learning.server_caps

    @property
    def answer_dating(self) -> AnswerDating | None:
        """How calls are dated by their answers (window shape), with what it moved so far."""
        return self.learning.dating

    # -- admission ------------------------------------------------------------------------

    def acquire(self, cost: Cost = 1.0) -> Acquire:
        """Wait for the right to make one call costing `cost` (see `conveyor.limits.costs`).

        ``async with limiter.acquire(cost=estimate) as slot: ...``. Raises `CircuitOpen` at once
        if the circuit is open, and `ConfigError` for a cost no constraint could ever admit.
        """
        self._units(cost)
        return Acquire(self, cost)

    def _units(self, cost: Cost) -> dict[str, float]:
        """The units `cost` books per dimension; `ConfigError` if it could never be admitted."""
        units = self.costs.reserve(cost)
        units["requests"] = 1.0
        for c in self._constraints:
            need = units[c.unit]
            if need > c.largest_cost() + 1e-9:
                what = "per window" if c.window is not None else "at once"
                msg = (
                    f"{self.name}: a call costing {need:g} {c.unit} can never be admitted: the"
                    f" limit allows {c.largest_cost():g} {c.unit} {what}. Split the request or"
                    " raise the limit."
                )
                raise ConfigError(msg)
        return units

    def _wait_s(self, now: float, units: dict[str, float]) -> float:
        learning = self.learning
        wait = learning.paused_until - now
        limit = self.concurrency_limit
        if limit is not None and self._in_flight >= limit:
            return math.inf  # until a slot is released
        if learning.breaker is not None:
            wait = max(wait, 0.0)  # the breaker fails fast in `admit`, it does not queue
        for c in self._constraints:
            wait = max(wait, c.wait_s(now, units[c.unit]))
        for dim, cap in learning.server_caps.items():
            wait = max(wait, cap.wait_s(now, units.get(dim, 0.0)))
        return max(wait, 0.0)

    def _commit(self, now: float, units: dict[str, float], cost: Cost) -> Slot:
        self.learning.started(now)
        entries: list[tuple[Constraint, Entry | Produced | None]] = [
            (c, c.admit(now, units[c.unit])) for c in self._constraints
        ]
        caps = self.learning.server_caps
        for dim, cap in list(caps.items()):
            if now >= cap.until:
                del caps[dim]
            else:
                cap.remaining -= units.get(dim, 0.0)
        self._in_flight += 1
        self.admitted += 1
        return Slot(self, cost, now, entries, units)

    async def admit(self, cost: Cost = 1.0) -> Slot:
        """Wait until a call costing `cost` may start; return its `Slot` (release it after)."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self.halted is not None:
            raise self.halted
        breaker = self.breaker
        if breaker is not None:
            wait = breaker.wait_s(now)
            if wait > 0:
                raise CircuitOpen(self.name, wait)
        units = self._units(cost)
        if not self._queue and self._wait_s(now, units) <= 0:
            return self._commit(now, units, cost)
        future: asyncio.Future[Slot] = loop.create_future()
        self._queue.append((units, future, now, cost))
        if self._pump_task is None or self._pump_task.done():
            self._pump_task = loop.create_task(self._pump(), name=f"conveyor-limiter-{self.name}")
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                # Granted just as we were cancelled: nothing was sent, give it all back.
                future.result().give_back()
            raise

    async def _pump(self) -> None:
        """Admit the head of the queue whenever it fits; sleep exactly until it might."""
        loop = asyncio.get_running_loop()
        queue = self._queue
        while queue:
            units, future, queued_at, cost = queue[0]
            if future.done():  # its caller gave up
                queue.popleft()
                continue
            now = loop.time()
            wait = self._wait_s(now, units)
            if wait <= 0:
                queue.popleft()
                future.set_result(self._commit(now, units, cost))
                continue
            horizon = self.window_s if self.window_s is not None else self.config.bucket_s
            if horizon is not None and now - queued_at < horizon:
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

        When several dimensions bind, strict first-come-first-served wastes budget: a large
        call waiting for tokens holds back small ones that the requests budget still has room
        for. So the first `LOOKAHEAD` callers may pass the head while it has waited less than
        one window (or one bucket's worth). Each one that passes uses little of what the head
        waits for, and after that the head goes first again: no caller waits forever.
        """
        best = math.inf
        for position in range(1, min(len(self._queue), LOOKAHEAD + 1)):
            units, future, _, cost = self._queue[position]
            if future.done():
                continue
            wait = self._wait_s(now, units)
            if wait <= 0:
                del self._queue[position]
                future.set_result(self._commit(now, units, cost))
                return 0.0
            best = min(best, wait)
        return best

    def _poke(self) -> None:
        wakeup = self._wakeup
        if wakeup is not None:
            _wake(wakeup)

    def _fail_waiters(self, error: QuotaExhausted) -> None:
        while self._queue:
            _, future, _, _ = self._queue.popleft()
            if not future.done():
                future.set_exception(error)
        self._poke()

    # -- what a call teaches: one path, from its slot's facts, at its release ---------------

    def answer_date(self, slot: Slot, now: float, *, ok: bool) -> float | None:
        """The date `slot`'s call gets now that its answer came (`now`), or None (kept)."""
        return self.learning.answer_date(slot.admitted_at, now, ok=ok)

    def _settle(self, slot: Slot, real: dict[str, float]) -> None:
        """Book what each dimension of `slot`'s call really cost instead of its estimate."""
        refund = False
        settled = slot.settled
        now = _clock.now()
        for c, entry in slot._entries:  # noqa: SLF001
            dim = c.unit
            if dim == "requests" or dim not in real:
                continue
            delta = real[dim] - settled.get(dim, 0.0)
            if delta or isinstance(entry, Produced):
                c.settle(entry, real[dim], delta, now)
                refund = refund or delta < 0
        settled.update(real)
        if refund:
            self._poke()

    def _release(
        self, slot: Slot, error: BaseException | None, latency_s: float | None, *, sent_at: float
    ) -> None:
        del slot  # the Redis limiter's needs it
        self._in_flight -= 1
        if error is None:
            self.learning.succeeded(latency_s, self._in_flight + 1)
        else:
            self.learn_from_error(error, sent_at=sent_at)
        self._poke()

    def learn_from_error(self, error: BaseException, *, sent_at: float | None = None) -> None:
        """Learn from a failed call (`conveyor.policy.classify`, or the limiter's classifier).

        An exhausted quota or spend cap halts the limiter. A rate limit or an overloaded
        service (429, 503, 529, an AWS throttle, Google's ``RESOURCE_EXHAUSTED``, a
        `RetryAfter` raised by the task) pauses every sharer for the wait it names, if any;
        other retryable failures count toward the breaker.
        """
        self.learning.failed(error, sent_at=sent_at, admitted_since=self._admitted_since)
        self._poke()

    def halt(self, message: str = "") -> None:
        """Admit no more calls: the API's quota is exhausted (`message` is what it said).

        Every caller waiting, and every later one, gets `QuotaExhausted` at once: waiting
        would never help, and retrying would only spend the calls the account no longer has.
        """
        self.learning.halt(message)

    def pause_for(self, seconds: float) -> None:
        """Stop admitting anyone for `seconds` (the API said "retry after")."""
        self.learning.pause_for(seconds)

    def observe_headers(self, headers: Any, *, sent_at: float | None = None) -> None:
        """Learn from an answer's rate-limit headers (`Learning.observe_headers`)."""
        self.learning.observe_headers(headers, sent_at=sent_at, admitted_since=self._admitted_since)

    def _admitted_since(self, dim: str, since: float) -> float:
        for c in self._constraints:
            if c.unit == dim and c.window is not None:
                return c.admitted_since(since)
        return 0.0

    @property
    def adopted(self) -> dict[str, tuple[float, float]]:
        """Limits adopted from what the API stated: dimension -> (ours before, the API's)."""
        return dict(self.learning.adopted)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
