"""What a failed call's error means, read purely from the exception: one classifier for all.

Every API says "slow down", "we are overloaded", "you have nothing left" and "try again" in
its own way. `classify` reads them all, importing no SDK (shapes are recognised by their
attributes), and answers one `Verdict`:

- ``rate_limited``: a rate limit was hit; wait (for ``retry_after_s`` when the API named it)
  and retry. The limiter the call ran under pauses every sharer for that long. HTTP 429;
  `conveyor.RetryAfter` raised by a task; AWS throttles (botocore's ``ClientError`` with a
  throttling ``Error.Code``, HTTP 400 inside); Google's ``RESOURCE_EXHAUSTED`` with its
  ``RetryInfo`` delay.
- ``overloaded``: the service is busy, not the caller over its limit; back off and retry.
  HTTP 503 and Anthropic's 529 ``overloaded_error`` (also when it arrives inside a stream that
  began with HTTP 200).
- ``quota``: the account's quota or spend cap is used up; never retried, and the limiter
  admits no more calls. OpenAI's ``insufficient_quota``, Anthropic's 429 naming the spend
  limit (without a ``retry-after``) and its 400s for a workspace's usage limit or an empty
  credit balance (`conveyor.policy.llm_errors.quota_exhausted`), Google's per-day quota and
  ``RESOURCE_QUOTA_EXCEEDED``, AWS quota codes.
- ``transient``: worth another try (timeouts, dropped connections, 5xx, 408/425).
- ``permanent``: anything else (a bug or a bad request does not get better by retrying).

Your own errors are your rules' business: a `Classifier` tries its ``rules`` first, in order,
and the first verdict one gives wins; an error no rule claims gets the reading above. There is
no registry to add rules to: a classifier is a value, handed to what uses it
(``conveyor.Retry(classifier=...)``), so two runs in one process can read errors differently.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import (
    AttemptTimeout,
    CircuitOpen,
    ConfigError,
    DeadlineExceeded,
    InvalidAnswer,
    QuotaExhausted,
    RetryAfter,
)
from ._checks import is_exception_match
from .cloud_errors import AWS_QUOTA_CODES, AWS_THROTTLE_CODES, AWS_TRANSIENT_CODES, aws, google
from .llm_errors import api_error_fields, quota_exhausted, should_retry_hint
from .retry_after import http_status_of, retry_after_s
from .verdict import ErrorKind, Verdict

__all__ = [
    "AWS_QUOTA_CODES",
    "AWS_THROTTLE_CODES",
    "AWS_TRANSIENT_CODES",
    "DEFAULT_CLASSIFIER",
    "RETRYABLE_STATUSES",
    "Classifier",
    "ErrorKind",
    "Rule",
    "Verdict",
    "classify",
    "rule_for",
]

#: HTTP statuses that say "try again": timeout, too early, too many requests, server errors that
#: are usually passing, and 529 (overloaded). 501 (not implemented) and 505 are permanent.
RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504, 529})

#: A rule: given an error, its `Verdict`, or ``None`` to leave it to the next rule.
Rule = Callable[[BaseException], "Verdict | None"]

# Transport errors of the HTTP clients users bring (httpx, aiohttp, openai), recognised by class
# name so that Conveyor imports none of them.
_TRANSIENT_CLASS_NAMES = frozenset(
    {
        "NetworkError",  # httpx: ConnectError, ReadError, WriteError, CloseError
        "TimeoutException",  # httpx
        "RemoteProtocolError",  # httpx: server closed the connection mid-answer
        "ClientConnectionError",  # aiohttp: refused, reset, server disconnected
        "ClientPayloadError",  # aiohttp: truncated body
        "APIConnectionError",  # openai (and APITimeoutError below it)
    }
)
_OVERLOADED_TYPE = "overloaded_error"  # Anthropic's error type for a 529, also sent mid-stream


@dataclass(frozen=True, slots=True)
class Classifier:
    """Reads errors into verdicts: your `rules` first, in order, then the built-in reading.

    A rule is a function ``(exception) -> Verdict | None``; the first one to answer a `Verdict`
    decides, ``None`` leaves the error to the next rule. `rule_for` writes the common ones.
    Checked when made: a rule that is not callable (or is an exception class, not a rule) is a
    `ConfigError`; one that answers anything but a `Verdict` or ``None`` raises a
    `ConfigError` naming it when it does.

    >>> class SlowDown(Exception): ...
    >>> mine = Classifier(rules=(rule_for(SlowDown, "rate_limited", retry_after_s=2),))
    >>> mine.classify(SlowDown())
    Verdict(kind='rate_limited', retry_after_s=2.0, reason='SlowDown (a rule)')
    >>> mine.classify(TimeoutError()).kind
    'transient'
    """

    rules: tuple[Rule, ...] = ()

    def __post_init__(self) -> None:
        rules: Any = self.rules
        if callable(rules) or not isinstance(rules, tuple | list):
            msg = (
                f"Classifier(rules={rules!r}): rules is a tuple of rules, tried in order;"
                " write Classifier(rules=(rule,)) for one"
            )
            raise ConfigError(msg)
        for i, rule in enumerate(rules):
            if isinstance(rule, type):
                msg = (
                    f"Classifier(rules=...): rule {i} is the class {rule.__name__}, not a rule;"
                    f" write rule_for({rule.__name__}, kind) for 'every {rule.__name__} is kind'"
                )
                raise ConfigError(msg)
            if not callable(rule):
                msg = (
                    f"Classifier(rules=...): rule {i} ({rule!r}) is not callable; a rule is a"
                    " function (exception) -> Verdict | None"
                )
                raise ConfigError(msg)
        object.__setattr__(self, "rules", tuple(rules))

    def classify(self, exc: BaseException, *, now_wall_s: float | None = None) -> Verdict:
        """The `Verdict` on `exc`: the first rule's that answers one, else the built-in one.

        `now_wall_s` (Unix seconds) dates a ``Retry-After`` given as a date, for the built-in
        reading; without it, that verdict carries no wait (what is retryable does not depend
        on it).
        """
        for rule in self.rules:
            verdict = rule(exc)
            if verdict is None:
                continue
            if isinstance(verdict, Verdict):
                return verdict
            msg = (
                f"classifier rule {_name(rule)} answered {verdict!r} for"
                f" {type(exc).__name__}: a rule answers a Verdict, or None to leave the error"
                " to the next rule"
            )
            raise ConfigError(msg)
        return classify(exc, now_wall_s=now_wall_s)


@dataclass(frozen=True, slots=True)
class _MatchRule:
    """The rule `rule_for` makes: `verdict` for every error `match` matches."""

    match: type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], Any]
    verdict: Verdict

    def __call__(self, exc: BaseException) -> Verdict | None:
        match = self.match
        hit = isinstance(exc, match) if isinstance(match, type | tuple) else bool(match(exc))
        return self.verdict if hit else None

    def __repr__(self) -> str:
        wait = self.verdict.retry_after_s
        extra = "" if wait is None else f", retry_after_s={wait:g}"
        return f"rule_for({_name(self.match)}, {self.verdict.kind!r}{extra})"


def rule_for(
    match: type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], Any],
    kind: ErrorKind,
    *,
    retry_after_s: float | None = None,
    reason: str = "",
) -> Rule:
    """A rule giving ``Verdict(kind, retry_after_s, reason)`` to every error `match` matches.

    `match` is an exception type, a tuple of them, or a predicate ``(exception) -> bool``.

    >>> rule_for(ValueError, "quota")(ValueError("no credit left"))
    Verdict(kind='quota', retry_after_s=None, reason='ValueError (a rule)')
    >>> rule_for(ValueError, "quota")(KeyError("k")) is None
    True
    """
    if not is_exception_match(match):
        msg = (
            f"rule_for({match!r}, ...): match must be an exception type, a non-empty tuple of"
            " them, or a function (exception) -> bool"
        )
        raise ConfigError(msg)
    try:
        verdict = Verdict(kind, retry_after_s, reason or f"{_name(match)} (a rule)")
    except ConfigError as bad:
        msg = f"rule_for({_name(match)}, {kind!r}, ...): {bad}"
        raise ConfigError(msg) from None
    return _MatchRule(match, verdict)


def _name(thing: object) -> str:
    if isinstance(thing, tuple):
        return "(" + ", ".join(_name(t) for t in thing) + ")"
    return str(getattr(thing, "__qualname__", None) or repr(thing))


def classify(exc: BaseException, *, now_wall_s: float | None = None) -> Verdict:
    """The built-in `Verdict` on `exc` (no rules of yours); see the module docstring.

    `now_wall_s` (Unix seconds) dates a ``Retry-After`` given as a date; without it, the
    verdict carries no wait (what is retryable does not depend on it).

    >>> classify(RetryAfter(2.0))
    Verdict(kind='rate_limited', retry_after_s=2.0, reason='RetryAfter')
    """
    verdict = _ours(exc)
    if verdict is not None:
        return verdict
    hint = None if now_wall_s is None else retry_after_s(exc, now_wall_s=now_wall_s)
    verdict = aws(exc) or google(exc) or _overloaded(exc, hint) or _by_status(exc, hint)
    should = should_retry_hint(exc)  # the API's own word on retrying wins over its status
    if should is False and verdict.kind != "quota":
        return Verdict("permanent", None, "x-should-retry: false")
    if should is True and verdict.kind == "permanent":
        return Verdict("transient", hint, "x-should-retry: true")
    return verdict


#: The classifier without rules of yours: `classify` itself.
DEFAULT_CLASSIFIER = Classifier()


def _ours(exc: BaseException) -> Verdict | None:  # noqa: PLR0911 - one return per kind
    """Conveyor's own errors, and an exhausted quota (which no hint can make retryable)."""
    if isinstance(exc, RetryAfter):
        return Verdict("rate_limited", exc.seconds if exc.seconds >= 0 else None, "RetryAfter")
    if isinstance(exc, InvalidAnswer) and not exc.retryable:
        return Verdict("permanent", None, f"InvalidAnswer ({exc.reason}): retrying cannot help")
    if isinstance(exc, AttemptTimeout | CircuitOpen | InvalidAnswer):
        return Verdict("transient", None, type(exc).__name__)
    if isinstance(exc, DeadlineExceeded):
        return Verdict("permanent", None, "the item's deadline passed")
    if isinstance(exc, QuotaExhausted):
        return Verdict("quota", None, exc.api_message or "the quota is used up")
    if quota_exhausted(exc):  # the reason is what the API said: the limiter halts with it
        return Verdict("quota", None, api_error_fields(exc)[2] or "the quota is used up")
    return None


def _overloaded(exc: BaseException, hint: float | None) -> Verdict | None:
    """Anthropic's ``overloaded_error``: a 529, or the same error as an event of a stream.

    A stream's status was 200 when it began, so an SDK raises that error with status 200: only
    the error's type says what it is.
    """
    if api_error_fields(exc)[1] == _OVERLOADED_TYPE:
        return Verdict("overloaded", hint, _OVERLOADED_TYPE)
    return None


def _by_status(exc: BaseException, hint: float | None) -> Verdict:
    status = http_status_of(exc)
    if status == 429:  # a spend cap's 429 was read by `_ours` (quota_exhausted)
        return Verdict("rate_limited", hint, "HTTP 429")
    if status in (503, 529):
        return Verdict("overloaded", hint, f"HTTP {status}")
    if status is not None:
        kind: ErrorKind = "transient" if status in RETRYABLE_STATUSES else "permanent"
        return Verdict(kind, hint, f"HTTP {status}")
    if isinstance(exc, TimeoutError | ConnectionError) or any(
        cls.__name__ in _TRANSIENT_CLASS_NAMES for cls in type(exc).__mro__
    ):
        return Verdict("transient", None, type(exc).__name__)
    return Verdict("permanent", None, type(exc).__name__)
