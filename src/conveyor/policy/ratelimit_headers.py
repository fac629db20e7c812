"""Read what a server says about its rate limits from its response headers, purely.

Every budget a response states is read on its own, keyed by its dimension: ``"requests"``,
``"tokens"``, ``"input_tokens"``, ``"output_tokens"``, or an IETF policy's own unit. Budgets are
never folded together: a limiter of input tokens reads the input-token figure, whatever the
output-token one says (folding them once held such a limiter back by the output figure).

Four header families are understood, and when several are present the first that says anything
wins, in this order:

1. ``openai``: ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}``; the reset is a Go
   duration (``6m0s``, ``20ms``). OpenAI's rate-limits guide ("Rate limits in headers") states
   the limits per minute (RPM, TPM) and the reset as the time until the limit "resets to its
   initial state"; its own example (60 requests a minute, 59 left, reset ``1s``) shows the
   budget coming back a little at a time, not whole at a window's end.
2. ``anthropic``: ``anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,
   remaining,reset}``; the reset is an RFC 3339 time. Anthropic's rate-limits page (API
   reference: "About our limits", "Rate limits", "Response headers") says the limits are per
   minute (RPM, ITPM, OTPM); that they are a token bucket, "your capacity is continuously
   replenished up to your maximum limit, rather than being reset at fixed intervals", the reset
   being when the budget is "fully replenished"; that every token ``-remaining`` is "rounded to
   the nearest thousand"; and that ``tokens-*`` shows "the most restrictive limit currently in
   effect" (a workspace's, or input and output summed): a budget of its own, ``"tokens"``.
3. ``ietf``: draft-ietf-httpapi-ratelimit-headers, in all its shapes: the structured
   ``RateLimit: "default";r=50;t=30`` with ``RateLimit-Policy: "default";q=100;w=60`` (drafts
   08+; per dimension, the policy with the lowest remaining wins), the dictionary
   ``RateLimit: limit=100, remaining=50, reset=30`` (draft 07), and the separate
   ``RateLimit-Limit``/``-Remaining``/``-Reset`` fields (drafts 00-06). Resets are delta seconds;
   the period is the policy's ``w`` (``window`` in the oldest drafts). A policy's quota unit
   (``qu``) names its dimension: none or ``requests`` is ``"requests"``, ``tokens`` is
   ``"tokens"``, and any other plain token (``input-tokens``, ``content-bytes``) is a dimension
   of its own with ``-`` read as ``_``: a limiter that spends that unit finds its figure, and
   every other limiter never asks for it. ``concurrent-requests`` is not read (it counts calls
   in flight, not a budget spent over a window), nor is a unit that is not a plain token.
4. ``x-ratelimit``: ``X-RateLimit-{Limit,Remaining,Reset}`` (GitHub and many others); a reset
   above 1e9 is a Unix time (above 1e12, in milliseconds), a smaller one is delta seconds.

Each `Budget` also says the period its limit is stated over, how coarsely its remaining is
rounded, and whether it refills continuously (OpenAI's and Anthropic's: a token bucket) or comes
back whole at its reset (a fixed window: every other family, since none says otherwise).

Anything malformed becomes ``None`` for that field and never raises: a bad header, or a broken
header object, must not crash a run. Numbers are finite and >= 0; a negative remaining (an
overdrawn budget) reads as 0. ``Retry-After`` is `conveyor.policy.retry_after`'s business.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from .ratelimit_formats import (
    count,
    delay_s,
    member,
    members,
    number,
    parse_duration_s,
    period_s,
    rfc3339_delta_s,
    unit_count,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = ["Budget", "RateLimitInfo", "parse_duration_s", "parse_rate_limit_headers"]

# A Unix time in seconds is above 1e9 since 2001; in milliseconds, above 1e12.
_EPOCH_S = 1e9
_EPOCH_MS = 1e12
#: OpenAI's and Anthropic's limits are stated per minute (RPM, TPM, ITPM, OTPM).
_PER_MINUTE_S = 60.0
#: Anthropic rounds every token budget's remaining to the nearest thousand.
_ANTHROPIC_TOKEN_GRANULARITY = 1000.0
_ANTHROPIC_DIMENSIONS = ("requests", "tokens", "input_tokens", "output_tokens")
_REQUEST_UNITS = frozenset({"", "request", "requests"})
_TOKEN_UNITS = frozenset({"token", "tokens"})
# IETF units that are no budget spent over a window.
_NOT_A_RATE = frozenset({"concurrent-requests"})
# A unit that may name a dimension: a lower-case word, digits, "-" and "_" (no spaces, no dots).
_PLAIN_UNIT = re.compile(r"[a-z][a-z0-9_-]{0,62}", re.ASCII)


@dataclass(frozen=True, slots=True)
class Budget:
    """What the server says about one budget (one dimension: requests, tokens, ...)."""

    limit: float | None
    """The budget's size per its period (``None`` if not said)."""
    remaining: float | None
    """What is left now, >= 0 (``None`` if not said)."""
    reset_s: float | None
    """Seconds from now until the budget is full again or its window resets (``None``: not said)."""
    period_s: float | None = None
    """The period `limit` is stated over, in seconds (``None``: not said)."""
    granularity: float = 1.0
    """How coarsely `remaining` is rounded: the true figure is within half of it either way."""
    refills: bool = False
    """True if the budget comes back continuously (a token bucket), not whole at its reset."""


@dataclass(frozen=True, slots=True)
class RateLimitInfo:
    """The budgets one response describes, by dimension, and the header family they came from."""

    budgets: Mapping[str, Budget]
    """Each stated budget by dimension: ``"requests"``, ``"tokens"``, ``"input_tokens"``, ..."""
    source: str
    """``"openai"``, ``"anthropic"``, ``"ietf"``, ``"x-ratelimit"`` or ``"none"``."""

    def __post_init__(self) -> None:
        # A read-only copy: the info is a value, shared between readers.
        object.__setattr__(self, "budgets", MappingProxyType(dict(self.budgets)))

    def __hash__(self) -> int:
        return hash((tuple(sorted(self.budgets.items())), self.source))

    @property
    def requests(self) -> Budget | None:
        """The requests budget, if stated."""
        return self.budgets.get("requests")

    @property
    def tokens(self) -> Budget | None:
        """The (total) tokens budget, if stated; input and output tokens are their own."""
        return self.budgets.get("tokens")


_NOTHING = RateLimitInfo(budgets={}, source="none")

# The header fields, by lower-cased name, each with its values in the order they came.
_Fields = dict[str, list[str]]
_Family = Callable[[_Fields, float], dict[str, Budget]]


def parse_rate_limit_headers(
    headers: Mapping[str, str] | Iterable[tuple[str, str]], *, now_wall_s: float
) -> RateLimitInfo:
    """Read the budgets a response's headers describe, one per dimension.

    `headers` is any mapping (a dict in any case, httpx's or aiohttp's headers, a multidict) or
    an iterable of (name, value) pairs; bytes are decoded as latin-1. `now_wall_s` is the Unix
    time now, to turn reset times into delays.

    >>> info = parse_rate_limit_headers(
    ...     {"x-ratelimit-remaining-requests": "9", "x-ratelimit-reset-requests": "6m0s"},
    ...     now_wall_s=0.0,
    ... )
    >>> info.source, sorted(info.budgets)
    ('openai', ['requests'])
    >>> budget = info.budgets["requests"]
    >>> budget.remaining, budget.reset_s, budget.period_s, budget.refills
    (9.0, 360.0, 60.0, True)
    """
    fields = _fields(headers)
    if not fields:
        return _NOTHING
    for source, family in _FAMILIES:
        budgets = family(fields, now_wall_s)
        if budgets:
            return RateLimitInfo(budgets=budgets, source=source)
    return _NOTHING


def _fields(headers: Any) -> _Fields | None:
    """Collect the header fields by lower-cased name; ``None`` if the object breaks on reading."""
    fields: _Fields = {}
    try:
        # httpx's Headers.items() joins repeated fields; multi_items() keeps them apart.
        for attr in ("multi_items", "items"):
            method = getattr(headers, attr, None)
            if callable(method):
                pairs = method()
                break
        else:
            pairs = headers
        for pair in pairs:
            if not (isinstance(pair, tuple | list) and len(pair) == 2):
                continue  # not a (name, value) pair: skip it, keep the rest
            name, value = _text(pair[0]), _text(pair[1])
            if name is not None and value is not None:
                fields.setdefault(name.strip().lower(), []).append(value)
    except Exception:  # a broken header object must not crash the run
        return None
    return fields


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return value if isinstance(value, str) else None


def _first(fields: _Fields, name: str) -> str | None:
    values = fields.get(name)
    return values[0] if values else None


def _joined(fields: _Fields, name: str) -> str:
    # RFC 9110 §5.3: repeated list fields are one list, joined with commas.
    return ", ".join(fields.get(name, ()))


def _budget(
    limit: float | None,
    remaining: float | None,
    reset_s: float | None,
    *,
    period: float | None = None,
    granularity: float = 1.0,
    refills: bool = False,
) -> Budget | None:
    """A budget from its three figures, each kept only if sane; ``None`` if none is."""
    limit, remaining, reset_s = count(limit), unit_count(remaining), delay_s(reset_s)
    if limit is None and remaining is None and reset_s is None:
        return None
    return Budget(limit, remaining, reset_s, period_s(period), granularity, refills)


def _stated(pairs: Iterable[tuple[str, Budget | None]]) -> dict[str, Budget]:
    return {dimension: budget for dimension, budget in pairs if budget is not None}


def _openai(fields: _Fields, _now_wall_s: float) -> dict[str, Budget]:
    def read(unit: str) -> Budget | None:
        reset = _first(fields, f"x-ratelimit-reset-{unit}")
        return _budget(
            number(_first(fields, f"x-ratelimit-limit-{unit}")),
            number(_first(fields, f"x-ratelimit-remaining-{unit}")),
            None if reset is None else parse_duration_s(reset),
            period=_PER_MINUTE_S,
            refills=True,
        )

    return _stated((unit, read(unit)) for unit in ("requests", "tokens"))


def _anthropic(fields: _Fields, now_wall_s: float) -> dict[str, Budget]:
    def read(dimension: str) -> Budget | None:
        prefix = f"anthropic-ratelimit-{dimension.replace('_', '-')}-"
        reset_s = rfc3339_delta_s(_first(fields, prefix + "reset"), now_wall_s=now_wall_s)
        return _budget(
            number(_first(fields, prefix + "limit")),
            number(_first(fields, prefix + "remaining")),
            None if reset_s is None else max(reset_s, 0.0),  # a reset in the past is now
            period=_PER_MINUTE_S,
            granularity=1.0 if dimension == "requests" else _ANTHROPIC_TOKEN_GRANULARITY,
            refills=True,
        )

    return _stated((dimension, read(dimension)) for dimension in _ANTHROPIC_DIMENSIONS)


def _ietf(fields: _Fields, _now_wall_s: float) -> dict[str, Budget]:
    combined = members(_joined(fields, "ratelimit"))
    policies = members(_joined(fields, "ratelimit-policy"))
    budgets: dict[str, Budget] = {}
    if combined and all("=" in member(text)[0] for text in combined):
        budgets = _stated([("requests", _ietf_dictionary(combined, policies))])
    elif combined:
        budgets = _ietf_structured(combined, policies)
    if not budgets:
        budgets = _stated([("requests", _ietf_separate(fields, policies))])
    return budgets


def _ietf_dictionary(combined: list[str], policies: list[str]) -> Budget | None:
    """Draft 07: ``RateLimit: limit=100, remaining=50, reset=30`` (+ ``RateLimit-Policy``)."""
    values: dict[str, float | None] = {}
    for text in combined:
        key, _, value = member(text)[0].partition("=")
        values.setdefault(key.strip().lower(), number(value))
    limit = values.get("limit")
    return _budget(
        limit, values.get("remaining"), values.get("reset"), period=_window_of(limit, policies)
    )


def _ietf_structured(combined: list[str], policies: list[str]) -> dict[str, Budget]:
    """Drafts 08+: ``RateLimit: "p";r=50;t=30`` with ``RateLimit-Policy: "p";q=100;w=60``."""
    quotas: dict[str, tuple[float | None, float | None, str]] = {}
    for text in policies:
        name, params = member(text)
        window = number(params.get("w"))
        quotas.setdefault(name, (number(params.get("q")), window, params.get("qu", "").lower()))
    found: dict[str, list[Budget]] = {}
    for text in combined:
        name, params = member(text)
        quota, window, unit = quotas.get(name, (None, None, ""))
        dimension = _dimension(unit)
        budget = _budget(quota, number(params.get("r")), number(params.get("t")), period=window)
        if budget is not None and dimension is not None:
            found.setdefault(dimension, []).append(budget)
    return {dimension: _most_restrictive(budgets) for dimension, budgets in found.items()}


def _dimension(unit: str) -> str | None:
    """The dimension an IETF quota unit names; ``None`` if it is no budget or no plain token."""
    if unit in _REQUEST_UNITS:
        return "requests"
    if unit in _TOKEN_UNITS:
        return "tokens"
    if unit in _NOT_A_RATE or _PLAIN_UNIT.fullmatch(unit) is None:
        return None
    return unit.replace("-", "_")


def _most_restrictive(budgets: list[Budget]) -> Budget:
    """The budget with the lowest remaining; the first one if equal (min keeps the first)."""
    return min(budgets, key=lambda b: math.inf if b.remaining is None else b.remaining)


def _ietf_separate(fields: _Fields, policies: list[str]) -> Budget | None:
    """Drafts 00-06: ``RateLimit-Limit: 100``, ``-Remaining: 50``, ``-Reset: 30`` (+ a policy)."""
    limit_field = members(_first(fields, "ratelimit-limit") or "")
    limit = number(member(limit_field[0])[0]) if limit_field else None
    if limit is None and policies:
        # The limit may be said only by the policy: "100;w=60" (06) or '"p";q=100' (08+), if
        # that policy counts requests (these fields have no other unit).
        head, params = member(policies[0])
        if _dimension(params.get("qu", "").lower()) == "requests":
            limit = number(head) if "q" not in params else number(params["q"])
    # The policies may also follow the limit in its own field: "10, 10;w=1, 1000;w=3600" (03).
    return _budget(
        limit,
        _list_head_number(fields, "ratelimit-remaining"),
        _list_head_number(fields, "ratelimit-reset"),
        period=_window_of(limit, [*limit_field, *policies]),
    )


def _window_of(limit: float | None, policies: list[str]) -> float | None:
    """The window (``w``, ``window`` before draft 03) of the first policy whose quota is `limit`.

    A policy reads ``100;w=60`` (drafts 00-07: the quota heads it) or ``"p";q=100;w=60`` (08+).
    """
    if limit is None:
        return None
    for text in policies:
        head, params = member(text)
        quota = number(params["q"]) if "q" in params else number(head)
        window = period_s(number(params.get("w", params.get("window"))))
        if quota == limit and window is not None:
            return window
    return None


def _list_head_number(fields: _Fields, name: str) -> float | None:
    """The number heading a list field: ``RateLimit-Limit: 10, 10;w=1, 1000;w=3600`` is 10."""
    value = _first(fields, name)
    if value is None:
        return None
    heads = members(value)
    return number(member(heads[0])[0]) if heads else None


def _x_ratelimit(fields: _Fields, now_wall_s: float) -> dict[str, Budget]:
    reset = _list_head_number(fields, "x-ratelimit-reset")
    if reset is not None and reset > _EPOCH_MS:
        reset = max(reset / 1000.0 - now_wall_s, 0.0)
    elif reset is not None and reset > _EPOCH_S:
        reset = max(reset - now_wall_s, 0.0)
    budget = _budget(
        _list_head_number(fields, "x-ratelimit-limit"),
        _list_head_number(fields, "x-ratelimit-remaining"),
        reset,
    )
    return _stated([("requests", budget)])


_FAMILIES: tuple[tuple[str, _Family], ...] = (
    ("openai", _openai),
    ("anthropic", _anthropic),
    ("ietf", _ietf),
    ("x-ratelimit", _x_ratelimit),
)
