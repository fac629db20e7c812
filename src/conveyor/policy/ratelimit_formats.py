"""The value grammars of rate-limit headers, parsed purely: numbers, durations, dates and lists.

Every parser here returns ``None`` for anything malformed and never raises: a bad header must
not crash a run. `conveyor.policy.ratelimit_headers` puts them together per header family.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta, timezone

__all__ = [
    "MAX_COUNT",
    "MAX_RESET_S",
    "count",
    "delay_s",
    "member",
    "members",
    "number",
    "parse_duration_s",
    "period_s",
    "rfc3339_delta_s",
    "unit_count",
]

#: A limit or a remaining count above this is not a real budget (garbage, or an overflow).
MAX_COUNT = 1e15
#: A reset further away than this is not a usable hint: the longest real window is a month.
MAX_RESET_S = 32 * 86_400.0

# Plain ASCII decimals only: float() would also take "1_000", "nan", "1e3" and Arabic digits.
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)", re.ASCII)
_UNSIGNED = re.compile(r"(?:\d+(?:\.\d*)?|\.\d+)", re.ASCII)
# One "<number><unit>" part of a Go duration; "ms" before "m" so that "20ms" is not "20m" + "s".
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(h|ms|m|s|us|\u00b5s|\u03bcs|ns)", re.ASCII)
# (multiplier, divisor) to seconds; dividing keeps "20ms" exactly 0.02.
_UNIT_S: dict[str, tuple[float, float]] = {
    "h": (3600.0, 1.0),
    "m": (60.0, 1.0),
    "s": (1.0, 1.0),
    "ms": (1.0, 1e3),
    "us": (1.0, 1e6),
    "\u00b5s": (1.0, 1e6),  # MICRO SIGN, as Go writes it
    "\u03bcs": (1.0, 1e6),  # GREEK SMALL LETTER MU, also accepted by Go
    "ns": (1.0, 1e9),
}
# RFC 3339 §5.6 date-time; "T", "Z" and a space separator accepted in any case (§5.6 NOTE).
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?(?:([Zz])|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)
_ESCAPE = re.compile(r"\\(.)")


def number(text: str | None) -> float | None:
    """Parse a plain decimal (an optional sign, digits, an optional fraction); ``None`` if not.

    >>> number(" 42 "), number("-1.5"), number("1e3"), number("nan")
    (42.0, -1.5, None, None)
    """
    if text is None:
        return None
    text = text.strip()  # also strips "\x1f" and friends, which float() would refuse
    if _NUMBER.fullmatch(text) is None:
        return None
    value = float(text)
    return value if math.isfinite(value) else None  # "9" * 400 overflows to inf


def count(value: float | None) -> float | None:
    """Keep a limit that is a real count: finite, >= 0 and at most `MAX_COUNT`."""
    if value is None or not 0.0 <= value <= MAX_COUNT:
        return None
    return value


def unit_count(value: float | None) -> float | None:
    """Keep a remaining count, clamped to >= 0: a server may report an overdrawn budget."""
    if value is None or not value <= MAX_COUNT:  # "not <=" also refuses NaN
        return None
    return max(value, 0.0)


def delay_s(value: float | None) -> float | None:
    """Keep a delay in seconds that is finite, >= 0 and at most `MAX_RESET_S`."""
    if value is None or not 0.0 <= value <= MAX_RESET_S:
        return None
    return value


def period_s(value: float | None) -> float | None:
    """Keep the length of a limit's period in seconds: > 0 and at most `MAX_RESET_S`.

    A zero, negative or absurdly long window says nothing a limiter can pace by.

    >>> period_s(60.0), period_s(0.0), period_s(1e12)
    (60.0, None, None)
    """
    if value is None or not 0.0 < value <= MAX_RESET_S:
        return None
    return value


def parse_duration_s(text: str) -> float | None:
    """Parse a duration as OpenAI's ``x-ratelimit-reset-*`` headers write it, into seconds.

    That is Go's ``time.Duration`` format (``"6m0s"``, ``"20ms"``, ``"1h2m3.5s"``; units ``h``,
    ``m``, ``s``, ``ms``, ``us``/``µs``, ``ns``), or bare seconds (``"12"``). Signs, unknown units
    and trailing garbage give ``None``; so does a value too large to be finite.

    >>> parse_duration_s("6m0s"), parse_duration_s("20ms"), parse_duration_s("12")
    (360.0, 0.02, 12.0)
    >>> parse_duration_s("5x") is None
    True
    """
    if not isinstance(text, str):
        return None
    text = text.strip()
    if _UNSIGNED.fullmatch(text):
        total = float(text)
    else:
        if not text:
            return None
        total, position = 0.0, 0
        while position < len(text):
            part = _DURATION_PART.match(text, position)
            if part is None:
                return None
            multiplier, divisor = _UNIT_S[part[2]]
            total += float(part[1]) * multiplier / divisor
            position = part.end()
    return total if math.isfinite(total) else None


def rfc3339_delta_s(text: str | None, *, now_wall_s: float) -> float | None:
    """Return the seconds from `now_wall_s` (a Unix time) to an RFC 3339 time; negative if past.

    A time without an offset is not RFC 3339 and gives ``None``; a leap second (``:60``) is read
    as the moment after ``:59``.

    >>> rfc3339_delta_s("1970-01-01T00:01:00Z", now_wall_s=30.0)
    30.0
    """
    if text is None:
        return None
    found = _RFC3339.fullmatch(text.strip())
    if found is None:
        return None
    year, month, day, hour, minute, second = (int(found[i]) for i in range(1, 7))
    leap = 1 if second == 60 else 0
    fraction = float("0" + found[7]) if found[7] else 0.0
    offset_min = 0
    if found[9]:
        offset_min = (int(found[10]) * 60 + int(found[11])) * (1 if found[9] == "+" else -1)
    try:
        zone = timezone(timedelta(minutes=offset_min))  # |offset| >= 24 h raises ValueError
        when = datetime(year, month, day, hour, minute, second - leap, tzinfo=zone)
        stamp = when.timestamp()
    except (ValueError, OverflowError):
        return None
    delta = stamp + leap + fraction - now_wall_s
    return delta if math.isfinite(delta) else None


def members(text: str) -> list[str]:
    """Split a comma-separated list field into its members, ignoring commas in quoted strings.

    >>> members('"a";comment="x, y", b')
    ['"a";comment="x, y"', 'b']
    """
    return [part for part in _split(text, ",") if part]


def member(text: str) -> tuple[str, dict[str, str]]:
    """Split one list member into its (unquoted) item and its parameters, keys lower-cased.

    A parameter without a value (``;flag``) maps to ``""``.

    >>> member('"default";r=50;t=30')
    ('default', {'r': '50', 't': '30'})
    """
    head, *rest = _split(text, ";")
    params: dict[str, str] = {}
    for param in rest:
        key, _, value = param.partition("=")
        params.setdefault(key.strip().lower(), _unquote(value.strip()))
    return _unquote(head), params


def _split(text: str, separator: str) -> list[str]:
    """Split on `separator` outside double quotes (RFC 8941 sf-string, backslash escapes)."""
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    parts.append("".join(current).strip())
    return parts


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return _ESCAPE.sub(r"\1", text[1:-1])
    return text
