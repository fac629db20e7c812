"""Read what a server says about its rate limits from its response headers, purely.

Four header families are understood, and when several are present the first that says anything
wins, in this order:

1. ``openai``: ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}``; the reset is a Go
   duration (``6m0s``, ``20ms``).
2. ``anthropic``: ``anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,
   remaining,reset}``; the reset is an RFC 3339 time. Without a ``tokens`` budget, the tighter
   of the input and output token budgets (the smaller remaining fraction) stands for it.
3. ``ietf``: draft-ietf-httpapi-ratelimit-headers, in all its shapes: the structured
   ``RateLimit: "default";r=50;t=30`` with ``RateLimit-Policy: "default";q=100;w=60`` (drafts
   08+; the policy with the lowest remaining wins), the dictionary
   ``RateLimit: limit=100, remaining=50, reset=30`` (draft 07), and the separate
   ``RateLimit-Limit``/``-Remaining``/``-Reset`` fields (drafts 00-06). Resets are delta seconds.
   A budget counts requests unless its policy's quota unit (``qu``) says tokens.
4. ``x-ratelimit``: ``X-RateLimit-{Limit,Remaining,Reset}`` (GitHub and many others); a reset
   above 1e9 is a Unix time (above 1e12, in milliseconds), a smaller one is delta seconds.

Anything malformed becomes ``None`` for that field and never raises: a bad header, or a broken
header object, must not crash a run. Numbers are finite and >= 0; a negative remaining (an
overdrawn budget) reads as 0. ``Retry-After`` is `conveyor.policy.retry_after`'s business.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .ratelimit_formats import (
    count,
    delay_s,
    member,
    members,
    number,
    parse_duration_s,
    rfc3339_delta_s,
    unit_count,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = ["Budget", "RateLimitInfo", "parse_duration_s", "parse_rate_limit_headers"]

# A Unix time in seconds is above 1e9 since 2001; in milliseconds, above 1e12.
_EPOCH_S = 1e9
_EPOCH_MS = 1e12
_REQUEST_UNITS = frozenset({"", "request", "requests"})
_TOKEN_UNITS = frozenset({"token", "tokens"})


@dataclass(frozen=True, slots=True)
class Budget:
    """What the server says about one budget (requests or tokens)."""

    limit: float | None
    """The budget's size per its period (``None`` if not said)."""
    remaining: float | None
    """What is left now, >= 0 (``None`` if not said)."""
    reset_s: float | None
    """Seconds from now until the budget is full again or its window resets (``None``: not said)."""


@dataclass(frozen=True, slots=True)
class RateLimitInfo:
    """The budgets one response describes, and the header family they came from."""

    requests: Budget | None
    tokens: Budget | None
    source: str
    """``"openai"``, ``"anthropic"``, ``"ietf"``, ``"x-ratelimit"`` or ``"none"``."""


_NOTHING = RateLimitInfo(requests=None, tokens=None, source="none")

# The header fields, by lower-cased name, each with its values in the order they came.
_Fields = dict[str, list[str]]
_Family = Callable[[_Fields, float], tuple[Budget | None, Budget | None]]


def parse_rate_limit_headers(
    headers: Mapping[str, str] | Iterable[tuple[str, str]], *, now_wall_s: float
) -> RateLimitInfo:
    """Read the request and token budgets a response's headers describe.

    `headers` is any mapping (a dict in any case, httpx's or aiohttp's headers, a multidict) or
    an iterable of (name, value) pairs; bytes are decoded as latin-1. `now_wall_s` is the Unix
    time now, to turn reset times into delays.

    >>> info = parse_rate_limit_headers(
    ...     {"x-ratelimit-remaining-requests": "9", "x-ratelimit-reset-requests": "6m0s"},
    ...     now_wall_s=0.0,
    ... )
    >>> info.source, info.requests
    ('openai', Budget(limit=None, remaining=9.0, reset_s=360.0))
    """
    fields = _fields(headers)
    if not fields:
        return _NOTHING
    for source, family in _FAMILIES:
        requests, tokens = family(fields, now_wall_s)
        if requests is not None or tokens is not None:
            return RateLimitInfo(requests=requests, tokens=tokens, source=source)
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


def _budget(limit: float | None, remaining: float | None, reset_s: float | None) -> Budget | None:
    limit, remaining, reset_s = count(limit), unit_count(remaining), delay_s(reset_s)
    if limit is None and remaining is None and reset_s is None:
        return None
    return Budget(limit=limit, remaining=remaining, reset_s=reset_s)


def _openai(fields: _Fields, _now_wall_s: float) -> tuple[Budget | None, Budget | None]:
    def read(unit: str) -> Budget | None:
        reset = _first(fields, f"x-ratelimit-reset-{unit}")
        return _budget(
            number(_first(fields, f"x-ratelimit-limit-{unit}")),
            number(_first(fields, f"x-ratelimit-remaining-{unit}")),
            None if reset is None else parse_duration_s(reset),
        )

    return read("requests"), read("tokens")


def _anthropic(fields: _Fields, now_wall_s: float) -> tuple[Budget | None, Budget | None]:
    def read(kind: str) -> Budget | None:
        prefix = f"anthropic-ratelimit-{kind}-"
        reset_s = rfc3339_delta_s(_first(fields, prefix + "reset"), now_wall_s=now_wall_s)
        return _budget(
            number(_first(fields, prefix + "limit")),
            number(_first(fields, prefix + "remaining")),
            None if reset_s is None else max(reset_s, 0.0),  # a reset in the past is now
        )

    tokens = read("tokens")
    if tokens is None:
        tokens = _tighter(read("input-tokens"), read("output-tokens"))
    return read("requests"), tokens


def _tighter(first: Budget | None, second: Budget | None) -> Budget | None:
    """The budget with the smaller remaining fraction; the first one if equal or unknown."""
    if first is None or second is None:
        return first or second
    return second if _fraction_left(second) < _fraction_left(first) else first


def _fraction_left(budget: Budget) -> float:
    if budget.remaining is None:
        return math.inf
    if budget.remaining == 0.0:
        return 0.0
    if not budget.limit:
        return math.inf
    return budget.remaining / budget.limit


def _ietf(fields: _Fields, _now_wall_s: float) -> tuple[Budget | None, Budget | None]:
    combined = members(_joined(fields, "ratelimit"))
    requests: Budget | None = None
    tokens: Budget | None = None
    if combined and all("=" in member(text)[0] for text in combined):
        requests = _ietf_dictionary(combined)
    elif combined:
        policies = members(_joined(fields, "ratelimit-policy"))
        requests, tokens = _ietf_structured(combined, policies)
    if requests is None and tokens is None:
        requests = _ietf_separate(fields)
    return requests, tokens


def _ietf_dictionary(combined: list[str]) -> Budget | None:
    """Draft 07: ``RateLimit: limit=100, remaining=50, reset=30``."""
    values: dict[str, float | None] = {}
    for text in combined:
        key, _, value = member(text)[0].partition("=")
        values.setdefault(key.strip().lower(), number(value))
    return _budget(values.get("limit"), values.get("remaining"), values.get("reset"))


def _ietf_structured(
    combined: list[str], policies: list[str]
) -> tuple[Budget | None, Budget | None]:
    """Drafts 08+: ``RateLimit: "p";r=50;t=30`` with ``RateLimit-Policy: "p";q=100;w=60``."""
    quotas: dict[str, tuple[float | None, str]] = {}
    for text in policies:
        name, params = member(text)
        quotas.setdefault(name, (number(params.get("q")), params.get("qu", "").lower()))
    requests: list[Budget] = []
    tokens: list[Budget] = []
    for text in combined:
        name, params = member(text)
        quota, unit = quotas.get(name, (None, ""))
        budget = _budget(quota, number(params.get("r")), number(params.get("t")))
        if budget is not None and unit in _REQUEST_UNITS:
            requests.append(budget)
        elif budget is not None and unit in _TOKEN_UNITS:
            tokens.append(budget)
        # Other units (content-bytes, concurrency) are not budgets conveyor spends.
    return _most_restrictive(requests), _most_restrictive(tokens)


def _most_restrictive(budgets: list[Budget]) -> Budget | None:
    """The budget with the lowest remaining; the first one if equal (min keeps the first)."""
    if not budgets:
        return None
    return min(budgets, key=lambda b: math.inf if b.remaining is None else b.remaining)


def _ietf_separate(fields: _Fields) -> Budget | None:
    """Drafts 00-06: ``RateLimit-Limit: 100``, ``-Remaining: 50``, ``-Reset: 30`` (+ a policy)."""
    limit = _list_head_number(fields, "ratelimit-limit")
    if limit is None:
        # The limit may be said only by the policy: "100;w=60" (06) or '"p";q=100' (08+).
        policies = members(_joined(fields, "ratelimit-policy"))
        if policies:
            head, params = member(policies[0])
            limit = number(head) if "q" not in params else number(params["q"])
    return _budget(
        limit,
        _list_head_number(fields, "ratelimit-remaining"),
        _list_head_number(fields, "ratelimit-reset"),
    )


def _list_head_number(fields: _Fields, name: str) -> float | None:
    """The number heading a list field: ``RateLimit-Limit: 10, 10;w=1, 1000;w=3600`` is 10."""
    value = _first(fields, name)
    if value is None:
        return None
    heads = members(value)
    return number(member(heads[0])[0]) if heads else None


def _x_ratelimit(fields: _Fields, now_wall_s: float) -> tuple[Budget | None, Budget | None]:
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
    return budget, None


_FAMILIES: tuple[tuple[str, _Family], ...] = (
    ("openai", _openai),
    ("anthropic", _anthropic),
    ("ietf", _ietf),
    ("x-ratelimit", _x_ratelimit),
)
