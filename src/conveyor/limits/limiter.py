"""`Limiter`: the limits of one API, shared by every task, run and job that calls it.

A limiter is three parts around one frozen `LimiterConfig`. Admission decides who goes now,
in this process (`conveyor.limits.admission`) or for every process at once, in Redis
(`conveyor.limits.redis_admission`); learning (`conveyor.limits.learning`) changes what
admission works with, from what each call taught (headers, pauses, quota, answer dating, the
breaker, adaptive concurrency); the cost model (`conveyor.limits.costs`) turns what a call
says it costs into units per dimension. The arithmetic of each constraint's shape (sliding
window, token bucket, paced) lives in `conveyor.policy`.

The engine talks to a limiter through three verbs, as declared by `conveyor.limits.protocol`:
``admit`` (wait for the right to call; a `Slot`), the slot's notes of what happened (when it
was sent and answered, the answer's headers and usage, its error), and ``release``, which
hands those facts to learning in one place.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Literal, Self, TypedDict, Unpack

from ..errors import CircuitOpen, ConfigError, QuotaExhausted
from ..policy.breaker import CircuitBreaker
from ..policy.classify import Classifier
from .admission import LOOKAHEAD, LocalAdmission
from .config import concurrency_policy
from .constraints import BURST_SPREAD, DEBT_DIMENSIONS, PACED_MARGIN, WINDOW_MARGIN, Constraint
from .costs import Cost, CostModel
from .learning import Learning
from .slot import Acquire, Slot
from .spec import LimiterConfig, LimiterSettings, limiter_config

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..policy.answer_dating import AnswerDating
    from ..policy.rates import Rate
    from .admission import Admission, Change
    from .constraints import ServerCap

    #: Builds a limiter's admission backend from the limiter and its constraints.
    AdmissionFactory = Callable[["Limiter", list[Constraint]], Admission]

__all__ = [
    "BURST_SPREAD",
    "LOOKAHEAD",
    "PACED_MARGIN",
    "WINDOW_MARGIN",
    "Limiter",
    "LimiterParts",
    "Slot",
]


class LimiterParts(TypedDict, total=False):
    """What `Limiter.from_config` takes beside the config: `Limiter`'s keywords, the same."""

    breaker: CircuitBreaker | Literal[False] | None
    classifier: Classifier | None


class Limiter:
    """The limits of one API, shared by every caller.

    Args:
        name: names the limiter in errors and summaries (``"openai"``).
        requests_per_minute, requests_per_second, tokens_per_minute, tokens_per_second,
        input_tokens_per_minute, output_tokens_per_minute: the usual rates; any combination,
            all enforced together (none by default). Input and output tokens are separate
            budgets (Anthropic).
        rates: more rates, for other periods or dimensions: ``[Rate(10_000, per="day")]``.
        concurrency: calls in flight at most through this limiter (``None``, the default: no
            limit), or ``"auto"`` to find the API's capacity from latency and push-back.
        concurrency_bounds: the least and the most calls in flight ``"auto"`` may choose
            (``(1, 100)``).
        window_s: the API enforces its limits over a sliding window this long (OpenAI: per
            minute limits over about a second, ``window_s=1``). The limiter is then exact for
            it: no such window ever admits more than its share, ``limit * window_s / period``.
        bucket_s: the API enforces its limits as token buckets refilling continuously, each
            holding this many seconds of its rate (Anthropic: ``bucket_s=1``).
        burst: with neither known (the default), admissions are spread evenly over the period
            (paced), and this many units may go at once (``0``).
        output_estimate: with an output-token limit, a first guess of a call's output tokens,
            for calls whose cost names no bound (``max_tokens``); answers refine it.
        output_reserve: ``"learned"`` (the default: a call reserves what answers have
            produced, at most its bound, and is settled from its answer) or ``"bound"`` (its
            ``max_tokens``).
        breaker: a `CircuitBreaker` (``None``: the default one; ``False``: none).
        classifier: decides what an error means (`conveyor.Classifier`; default: the built-in).

    Every limit is a keyword of `LimiterSettings`, and optional. Bad values fail here with
    `ConfigError`, naming the argument and the fix. The settings are kept as one frozen
    `LimiterConfig` (`config`); `Limiter.from_config` takes one whole.
    """

    def __init__(
        self,
        name: str,
        *,
        breaker: CircuitBreaker | Literal[False] | None = None,
        classifier: Classifier | None = None,
        **limits: Unpack[LimiterSettings],
    ) -> None:
        self._setup(limiter_config(name, **limits), breaker, classifier, LocalAdmission)

    @classmethod
    def from_config(cls, config: LimiterConfig, **parts: Unpack[LimiterParts]) -> Self:
        """A limiter enforcing `config` (with its own breaker and state).

        ``breaker`` and ``classifier`` are `Limiter`'s; the limits are the config's.
        """
        unknown = sorted(parts.keys() - LimiterParts.__optional_keys__)
        if unknown:
            msg = (
                f"Limiter.from_config(config, {unknown[0]}=...): it takes breaker= and"
                " classifier=; the limits are the config's (dataclasses.replace(config, ...))"
            )
            raise ConfigError(msg)
        limiter = cls.__new__(cls)
        breaker, classifier = parts.get("breaker"), parts.get("classifier")
        limiter._setup(config, breaker, classifier, LocalAdmission)  # noqa: SLF001 - its own
        return limiter

    def _setup(
        self,
        config: LimiterConfig,
        breaker: CircuitBreaker | Literal[False] | None,
        classifier: Classifier | None,
        admission: AdmissionFactory,
    ) -> None:
        """Build the parts around `config`; `admission` makes the backend that admits calls."""
        if not isinstance(config, LimiterConfig):
            msg = f"Limiter.from_config({config!r}): give a conveyor.LimiterConfig"
            raise ConfigError(msg)
        self.config = config
        self.name = config.name
        self.window_s = config.window_s
        self.costs = CostModel(config)
        self._constraints = [Constraint(r, config, self.costs.output) for r in config.rates]
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
        #: The classifier given, or None (the built-in one).
        self.classifier = classifier
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
        )
        #: Calls admitted so far, for summaries and progress.
        self.admitted = 0
        self._admission = admission(self, self._constraints)
        self.learning.listener = self._admission

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
    def in_flight(self) -> int:
        """Calls admitted by this process and not yet released."""
        return self._admission.in_flight

    @property
    def waiting(self) -> int:
        """Callers of this process waiting to be admitted now."""
        return self._admission.waiting

    def utilisation(self) -> dict[str, float]:
        """Per dimension, how much of the budget is in use now: 0 idle, 1 at the limit.

        Empty when the budget is held in Redis (shared by every process, not known here).
        """
        return self._admission.utilisation(asyncio.get_running_loop().time())

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

    @property
    def adopted(self) -> dict[str, tuple[float, float]]:
        """Limits adopted from what the API stated: dimension -> (ours before, the API's)."""
        return dict(self.learning.adopted)

    # -- admission ------------------------------------------------------------------------

    def acquire(self, cost: Cost = 1.0) -> Acquire:
        """Wait for the right to make one call costing `cost` (see `conveyor.limits.costs`).

        ``async with limiter.acquire(cost=estimate) as slot: ...``. Raises `CircuitOpen` at once
        if the circuit is open, and `ConfigError` for a cost no constraint could ever admit.
        """
        return Acquire(self, cost, self._units(cost))

    def _units(self, cost: Cost) -> dict[str, float]:
        """The units `cost` books per dimension; `ConfigError` if it could never be admitted."""
        units = self.costs.reserve(cost)
        units["requests"] = 1.0
        for c in self._constraints:
            need = units[c.unit]
            if need > c.largest_cost() + 1e-9:
                raise self.never_admitted(c.unit, need, c.largest_cost(), c.window is not None)
        return units

    def never_admitted(self, unit: str, need: float, most: float, window: bool) -> ConfigError:
        """The error for a call costing `need` `unit` where a call may cost `most` at most."""
        what = "per window" if window else "at once"
        fix = "Split the request or raise the limit."
        if self.config.shape == "bucket":
            what = f"at once (a bucket holds bucket_s={self.config.bucket_s:g} s of the rate)"
            fix = "Split the request, or raise the limit or bucket_s."
        msg = (
            f"{self.name}: a call costing {need:g} {unit} can never be admitted: the limit"
            f" allows {most:g} {unit} {what}. {fix}"
        )
        return ConfigError(msg)

    async def admit(self, cost: Cost = 1.0) -> Slot:
        """Wait until a call costing `cost` may start; return its `Slot` (release it after)."""
        return await self._admit(cost, None)

    async def _admit(self, cost: Cost, units: dict[str, float] | None) -> Slot:
        """`admit`, with the units `acquire` already worked out (None: work them out)."""
        now = asyncio.get_running_loop().time()
        if self.learning.halted is not None:
            raise self.learning.halted
        breaker = self.learning.breaker
        if breaker is not None:
            wait = breaker.wait_s(now)
            if wait > 0:
                raise CircuitOpen(self.name, wait)
        if units is None:
            units = self._units(cost)
        admission = self._admission
        slot = admission.ready(now, units, cost)
        if slot is None:
            slot = await admission.wait(now, units, cost)
        return slot

    # -- what a call teaches: one path, from its slot's facts, at its release ---------------

    def answer_date(self, slot: Slot, now: float, *, ok: bool) -> float | None:
        """The date `slot`'s call gets now that its answer came (`now`), or None (kept)."""
        return self.learning.answer_date(slot.admitted_at, now, ok=ok)

    def _settle(self, slot: Slot, real: dict[str, float]) -> None:
        """Book what each dimension of `slot`'s call really cost instead of its estimate."""
        settled = slot.settled
        changes: dict[str, Change] = {}
        for dim, cost in real.items():
            delta = cost - settled.get(dim, 0.0)
            # A debt bucket takes an answer's output when it is settled, whatever the estimate.
            if dim != "requests" and (delta or dim in DEBT_DIMENSIONS):
                changes[dim] = (cost, delta)
        settled.update(real)
        if changes:
            self._admission.settle(slot, changes)

    def _release(
        self, slot: Slot, error: BaseException | None, latency_s: float | None, *, sent_at: float
    ) -> None:
        admission = self._admission
        admission.released(slot)
        if error is None:
            self.learning.succeeded(latency_s, admission.in_flight + 1)
        else:
            self.learn_from_error(error, sent_at=sent_at)

    def learn_from_error(self, error: BaseException, *, sent_at: float | None = None) -> None:
        """Learn from a failed call (`conveyor.policy.classify`, or the limiter's classifier).

        An exhausted quota or spend cap halts the limiter. A rate limit or an overloaded
        service (429, 503, 529, an AWS throttle, Google's ``RESOURCE_EXHAUSTED``, a
        `RetryAfter` raised by the task) pauses every sharer for the wait it names, if any;
        other retryable failures count toward the breaker.
        """
        self.learning.failed(error, sent_at=sent_at, admitted_since=self._admitted_since)
        self._admission.changed()

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
