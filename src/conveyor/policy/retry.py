"""The retry policy (frozen configuration) and the pure decision it makes after a failure."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from ..errors import (
    ConfigError,
)
from ._checks import is_exception_match, is_positive
from .backoff import full_jitter_s
from .classify import DEFAULT_CLASSIFIER, RETRYABLE_STATUSES, Classifier, classify
from .retry_after import retry_after_s

__all__ = [
    "RETRYABLE_STATUSES",
    "Decision",
    "RandomSource",
    "Retry",
    "check_callable",
    "check_retry",
    "decide",
    "is_transient",
]


def is_transient(exc: BaseException) -> bool:
    """Return whether an error is worth retrying by default (`conveyor.policy.classify`).

    Yes for a rate limit (HTTP 429, `RetryAfter`, AWS throttles, Google's
    ``RESOURCE_EXHAUSTED``), an overloaded service (503, 529), timeouts, refused or dropped
    connections, an `InvalidAnswer`, and HTTP 408/425/5xx; no for everything else (a
    `ValueError` in your code will not get better by trying again). The API's own word wins:
    an exhausted quota or spend cap is not retried, and an ``x-should-retry: true|false``
    header decides. Pass ``Retry(on=Exception)`` to retry every error.
    """
    return classify(exc).retryable


class RandomSource(Protocol):
    """Where jitter comes from: anything with ``random() -> float`` in ``[0, 1)``."""

    def random(self) -> float:
        """Return a uniform sample in ``[0, 1)``."""
        ...


RetryOn = type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool]

# The longest wait a verdict may ask for, as for retry-after hints: beyond a day is no hint.
_MAX_WAIT_S = 86_400.0


def _positive(name: str, value: object, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not is_positive(value):
        hint = " or None for no limit" if allow_none else ""
        msg = f"Retry({name}={value!r}): {name} must be a number of seconds > 0{hint}"
        raise ConfigError(msg)


@dataclass(frozen=True, kw_only=True, slots=True)
class Retry:
    """How an item's failed attempts are retried.

    Args:
        attempts: total attempts per item, the first one included (1 = no retries).
        base_delay_s: the first retry's largest delay; each retry doubles it ...
        max_delay_s: ... up to this cap. The delay is drawn uniformly below that ceiling
            ("full jitter"), unless the error carries a retry-after hint, which wins.
        on: which errors are retried: an exception type, a tuple of types, or a predicate.
            The default, `is_transient`, retries timeouts, dropped connections, `RetryAfter`
            and HTTP 408/425/429/5xx, and nothing else.
        classifier: a `conveyor.Classifier` with rules of yours: its verdict decides what is
            retried (rate limited, overloaded, transient) and how long to wait (the wait the
            verdict names, else the error's retry-after hint). Give it or `on`, not both.
            ``None``: the built-in reading (`conveyor.policy.classify`).
        timeout_s: the longest one attempt may run; it is then cancelled and fails with
            `AttemptTimeout` (retryable). ``None``: no limit. ``"auto"``: four times the p95
            of recent successful attempts (at least 50 ms; 30 s until 20 have succeeded, and
            attempts started during that warm-up are cut as soon as the estimate is known).
        deadline_s: the longest an item may take, all attempts and waits included; no retry
            starts that could not begin before it. ``None``: no limit.
        rng: where jitter comes from (``random()`` in ``[0, 1)``); inject one to make delays
            reproducible.

    >>> Retry(attempts=5, timeout_s=10).retryable(TimeoutError())
    True
    """

    attempts: int = 3
    base_delay_s: float = 0.1
    max_delay_s: float = 10.0
    on: RetryOn = is_transient
    classifier: Classifier | None = None
    timeout_s: float | Literal["auto"] | None = None
    deadline_s: float | None = None
    rng: RandomSource = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.attempts, int) or isinstance(self.attempts, bool):
            msg = f"Retry(attempts={self.attempts!r}): attempts must be an int >= 1"
            raise ConfigError(msg)
        if self.attempts < 1:
            msg = (
                f"Retry(attempts={self.attempts}): attempts counts the first try too,"
                " so it must be >= 1 (use attempts=1 for no retries)"
            )
            raise ConfigError(msg)
        _positive("base_delay_s", self.base_delay_s)
        _positive("max_delay_s", self.max_delay_s)
        if self.max_delay_s < self.base_delay_s:
            msg = (
                f"Retry(base_delay_s={self.base_delay_s}, max_delay_s={self.max_delay_s}):"
                " the cap max_delay_s must be >= base_delay_s"
            )
            raise ConfigError(msg)
        if self.timeout_s != "auto":
            _positive("timeout_s", self.timeout_s, allow_none=True)
        _positive("deadline_s", self.deadline_s, allow_none=True)
        on = self.on
        if not is_exception_match(on):
            msg = (
                f"Retry(on={on!r}): on must be an exception type, a non-empty tuple of them,"
                " or a function (exception) -> bool"
            )
            raise ConfigError(msg)
        self._check_classifier()
        if not callable(getattr(self.rng, "random", None)):
            msg = f"Retry(rng={self.rng!r}): rng needs a random() method, like random.Random"
            raise ConfigError(msg)

    def _check_classifier(self) -> None:
        classifier = self.classifier
        if classifier is None:
            return
        if not isinstance(classifier, Classifier):
            msg = (
                f"Retry(classifier={classifier!r}): classifier must be a conveyor.Classifier,"
                " e.g. Classifier(rules=(rule_for(MyError, 'rate_limited'),)), or None"
            )
            raise ConfigError(msg)
        if self.on is not is_transient:
            msg = (
                f"Retry(on={self.on!r}, classifier=...): give one of them: on decides alone,"
                " the classifier by its verdicts; to have both, make on a rule, e.g."
                " Classifier(rules=(rule_for(MyError, 'transient'),))"
            )
            raise ConfigError(msg)

    def retryable(self, exc: BaseException) -> bool:
        """Return whether `exc` is one the policy retries (ignoring attempts and deadline)."""
        if self.classifier is not None:
            return self.classifier.classify(exc).retryable
        on = self.on
        if isinstance(on, type | tuple):
            return isinstance(exc, on)
        return bool(on(exc))

    def wait_s(self, exc: BaseException, *, now_wall_s: float) -> float | None:
        """The wait `exc` asks for before a retry, in seconds; ``None`` if it names none.

        The classifier's verdict's wait (your rule's, or the API's as the built-in reading
        finds it: ``Retry-After``, Google's ``RetryInfo``), else a retry-after hint on the
        error; at most a day. `now_wall_s` (Unix time) dates an HTTP-date hint.
        """
        classifier = self.classifier or DEFAULT_CLASSIFIER
        wait = classifier.classify(exc, now_wall_s=now_wall_s).retry_after_s
        if wait is None:
            wait = retry_after_s(exc, now_wall_s=now_wall_s)
        return None if wait is None else min(wait, _MAX_WAIT_S)


#: One attempt, no timeout: what the engine does when no policy is given.
NO_RETRY = Retry(attempts=1)


def check_retry(retry: object, call: str = "") -> None:
    """Raise `ConfigError` unless `retry` is None or a `Retry`; `call` names the function.

    >>> try:
    ...     check_retry(3, "f")
    ... except ConfigError as exc:
    ...     print(exc)
    f(retry=3): pass a conveyor.Retry, e.g. retry=conveyor.Retry(attempts=5)
    """
    if retry is not None and not isinstance(retry, Retry):
        fix = "pass a conveyor.Retry, e.g. retry=conveyor.Retry(attempts=5)"
        raise ConfigError(f"{_argument(call, 'retry', retry)}: {fix}")


def check_callable(value: object, name: str, what: str, call: str = "") -> None:
    """Raise `ConfigError` unless `value` is None or callable; `what` says what it is called with.

    >>> try:
    ...     check_callable("x", "on_event", "takes one event")
    ... except ConfigError as exc:
    ...     print(exc)
    on_event='x': pass a function that takes one event, or None
    """
    if value is not None and not callable(value):
        msg = f"{_argument(call, name, value)}: pass a function that {what}, or None"
        raise ConfigError(msg)


def _argument(call: str, name: str, value: object) -> str:
    """``name=value``, inside ``call(...)`` when a call is named."""
    shown = f"{name}={value!r}"
    return f"{call}({shown})" if call else shown


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do after a failed attempt: retry after `delay_s`, or give up and why."""

    retry: bool
    delay_s: float
    reason: str


def decide(
    policy: Retry,
    *,
    attempt: int,
    exc: BaseException,
    elapsed_s: float,
    now_wall_s: float,
    u: float,
) -> Decision:
    """Decide whether attempt number `attempt` (1-based), which raised `exc`, is retried.

    `elapsed_s` is the time since the item's first attempt started; `now_wall_s` (Unix time) is
    only used to read HTTP-date retry-after hints; `u` is a uniform sample in ``[0, 1)`` for the
    jitter. Pure: the same arguments always give the same decision.
    """
    if not policy.retryable(exc):
        return Decision(retry=False, delay_s=0.0, reason="not retryable")
    if attempt >= policy.attempts:
        return Decision(retry=False, delay_s=0.0, reason=f"gave up after {attempt} attempt(s)")
    hint = policy.wait_s(exc, now_wall_s=now_wall_s)
    if hint is not None:
        delay, why = hint, f"retry-after {hint:g}s"
    else:
        delay = full_jitter_s(attempt, base_s=policy.base_delay_s, cap_s=policy.max_delay_s, u=u)
        why = f"backoff {delay:.3g}s"
    if policy.deadline_s is not None and elapsed_s + delay >= policy.deadline_s:
        return Decision(
            retry=False,
            delay_s=0.0,
            reason=(
                f"gave up: a retry after {delay:.3g}s would pass deadline_s={policy.deadline_s:g}"
            ),
        )
    return Decision(retry=True, delay_s=delay, reason=why)
