"""Conveyor's exceptions: one root, every error carries its context.

The tree::

    ConveyorError                 the root: `except conveyor.ConveyorError` catches all of ours
    ├── ConfigError               a wrong argument, found at the call (also a ValueError)
    ├── RetryAfter                raised by *your* function: "retry this item after N seconds"
    ├── AttemptTimeout            one attempt ran past `Retry(timeout_s=...)` (also a TimeoutError)
    ├── DeadlineExceeded          an item ran past `Retry(deadline_s=...)` (also a TimeoutError)
    ├── CircuitOpen               a limiter's circuit is open; the call was not made (retryable)
    ├── QuotaExhausted            the API says the account's quota is used up (HTTP 429
    │                             ``insufficient_quota``): not retried; its limiter admits
    │                             no more calls
    ├── InvalidAnswer             a 2xx answer that fails validation (cut off, filtered, not
    │                             the JSON asked for): retryable, with the reason
    └── SourceError               the items iterable itself raised while being read

    Interrupted                   Ctrl-C during `run_sync`; carries the partial report.
                                  A KeyboardInterrupt, not a ConveyorError, so that code
                                  catching Exception does not swallow a Ctrl-C.

A failed item is never raised by default: it is *settled* as a failed `Outcome` holding the
exception your function raised. Only `fail_fast=True` raises it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .engine.report import Report

__all__ = [
    "AttemptTimeout",
    "CircuitOpen",
    "ConfigError",
    "ConveyorError",
    "DeadlineExceeded",
    "Interrupted",
    "InvalidAnswer",
    "QuotaExhausted",
    "RetryAfter",
    "SourceError",
]


class ConveyorError(Exception):
    """The root of every exception Conveyor raises."""


class ConfigError(ConveyorError, ValueError):
    """An argument is wrong; the message names it, the value, and the fix.

    It is also a `ValueError`, so code that guards calls with `except ValueError` keeps working.
    """


class RetryAfter(ConveyorError):
    """Raise this from your function to ask for a retry after `seconds`.

    The delay overrides the retry policy's backoff for that attempt (it is still bounded by the
    policy's attempts and deadline). HTTP errors that carry a `Retry-After` header are understood
    the same way without wrapping them.

    >>> raise RetryAfter(2.5, "server is busy")  # doctest: +SKIP
    """

    def __init__(self, seconds: float, message: str = "") -> None:
        if not (isinstance(seconds, int | float) and math.isfinite(seconds) and seconds >= 0):
            msg = f"RetryAfter(seconds={seconds!r}): seconds must be a finite number >= 0"
            raise ConfigError(msg)
        self.seconds = float(seconds)
        self.message = message
        super().__init__(message or f"retry after {self.seconds:g}s")


class AttemptTimeout(ConveyorError, TimeoutError):
    """One attempt took longer than the policy's `timeout_s`; it was cancelled."""

    def __init__(self, timeout_s: float, *, automatic: bool = False) -> None:
        self.timeout_s = timeout_s
        self.automatic = automatic
        how = (
            "the automatic timeout, Retry(timeout_s='auto'): 4 x p95 of recent successes"
            if automatic
            else f"Retry(timeout_s={timeout_s:g})"
        )
        super().__init__(f"attempt timed out after {timeout_s:.3g}s ({how})")


class DeadlineExceeded(ConveyorError, TimeoutError):
    """The item used up the policy's `deadline_s` across all its attempts."""

    def __init__(self, deadline_s: float, attempts: int) -> None:
        self.deadline_s = deadline_s
        self.attempts = attempts
        how = f"Retry(deadline_s={deadline_s:g})"
        super().__init__(
            f"item deadline of {deadline_s:g}s exceeded after {attempts} attempt(s) ({how})"
        )


class SourceError(ConveyorError):
    """Reading the next item from the items iterable raised; the cause is `__cause__`.

    Items already started were settled and reported before this was raised; `map` and
    `run_sync` attach their report as `report`.
    """

    def __init__(self, items_read: int) -> None:
        self.items_read = items_read
        #: From `map` and `run_sync`: the report of every item settled before the source failed.
        self.report: Report[Any, Any] | None = None
        super().__init__(
            f"the items iterable raised after {items_read} item(s) were read;"
            " see the exception above (__cause__). Items already started were settled."
        )


class Interrupted(KeyboardInterrupt):
    """Ctrl-C stopped `run_sync`; `report` holds every item settled so far.

    Items that were running when the interrupt came are in the report as cancelled.
    """

    def __init__(self, report: Report[Any, Any]) -> None:
        self.report = report
        s = report.summary
        super().__init__(
            f"interrupted: {s.succeeded} succeeded, {s.failed} failed, {s.cancelled} cancelled"
        )


class CircuitOpen(ConveyorError):
    """A limiter's circuit is open after repeated failures: the call was not made.

    Retryable: `retry_after` says when the next probe may go, and the retry policy waits that
    long if it allows another attempt.
    """

    def __init__(self, limiter: str, retry_after_s: float) -> None:
        self.limiter = limiter
        self.retry_after = retry_after_s
        why = f"circuit open for limiter {limiter!r} after repeated failures"
        super().__init__(f"{why}; the next probe may go in {retry_after_s:.3g}s")


class QuotaExhausted(ConveyorError):
    """The API says the account's quota (credit, monthly spend) is used up: not a rate limit.

    OpenAI answers it with HTTP 429 and the error code ``insufficient_quota``, Anthropic with a
    429 naming the spend limit and no ``retry-after``. Waiting does not
    help, so it is never retried, and the limiter that saw it admits no more calls: the run or
    job stops starting work at once. `limiter` names the limiter; `message` is the API's.
    """

    def __init__(self, limiter: str, message: str = "") -> None:
        self.limiter = limiter
        self.api_message = message
        said = f" (it said: {message})" if message else ""
        super().__init__(
            f"the API behind limiter {limiter!r} says its quota is exhausted (a quota or a"
            f" spend limit used up){said}: this is not a rate limit, so nothing more is sent;"
            " add credit or raise the quota or spend limit with the provider, then resume"
        )


class InvalidAnswer(ConveyorError):
    """A successful (2xx) answer that fails validation; retryable unless `retryable` is False.

    `reason` is one of ``"length"`` (cut off at ``max_tokens``), ``"content_filter"``
    (filtered), ``"refusal"`` (Claude declined), ``"finish_reason"`` (another unexpected
    finish or stop reason), ``"not_json"`` (the content does not parse as the JSON asked for)
    or ``"check_mismatch"`` (the check can never pass on this API's answers: not retryable).
    `answer` is the answer, when there is one (not named ``response``: the retry policy would
    read its 2xx status as the error's).
    """

    def __init__(
        self, reason: str, message: str, *, answer: Any = None, retryable: bool = True
    ) -> None:
        self.reason = reason
        self.answer = answer
        self.retryable = retryable
        super().__init__(message)
