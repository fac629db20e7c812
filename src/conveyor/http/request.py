"""The request file format, pure: one JSON line in, a `Request` (or an `InvalidLine`) out.

A line is a request in the OpenAI Batch API's format::

    {"custom_id": "req-1", "method": "POST", "url": "/v1/chat/completions", "body": {...}}

with optional ``"headers": {"Name": "value"}`` and ``"cost": N`` (tokens, replacing the
estimate). A line may not set a header that chooses where its request lands or how it is framed
(`is_routing_header`: ``Host``, ``Forwarded``, ``X-Forwarded-*``, hop-by-hop headers, ...): the
base URL names the host, and the client frames the message. When a default url is given
(``--url``), a line may instead be a bare JSON body, sent to that url. A line without a
``custom_id`` is named ``line-N`` after its line number.

Token estimate (what OpenAI's rate limiter charges before it knows the answer's length): for a
chat body, ``ceil(characters of all message contents / 4)`` plus ``max_completion_tokens`` or
``max_tokens`` (16 when absent); for any other body, ``ceil(len(body JSON) / 4)``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from .._json import BadJSON, loads
from .errors import InputError
from .redact import CREDENTIAL_HEADERS

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "CREDENTIAL_HEADERS",
    "DEFAULT_MAX_TOKENS",
    "METHODS",
    "ROUTING_HEADERS",
    "ROUTING_PREFIXES",
    "InvalidLine",
    "Request",
    "credential_headers",
    "estimate_tokens",
    "headers_problem",
    "is_routing_header",
    "join_url",
    "parse_line",
]

#: What a chat request is charged for its answer when it sets no ``max_tokens``.
DEFAULT_MAX_TOKENS = 16
#: The HTTP methods a line may use.
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
#: Headers (lower case) no request line may set, on any path (``conveyor run``, a job's items,
#: a batch's lines): each lets the line choose where its request lands behind a shared gateway
#: or proxy (and so reach a virtual host outside the base URL with its credentials), claim a
#: client address, or frame the message (request smuggling). The base URL names the host; the
#: client sets Host, Content-Length and the hop-by-hop headers itself.
ROUTING_HEADERS = frozenset(
    {
        # Where the request lands: the virtual host, the path a gateway really routes by.
        "host",
        "forwarded",
        "x-host",
        "x-http-host-override",
        "x-proxy-url",
        # The client's address, which gateways trust for allowlists and per-client limits.
        "x-real-ip",
        "x-client-ip",
        "client-ip",
        "true-client-ip",
        "x-cluster-client-ip",
        "cf-connecting-ip",
        "fastly-client-ip",
        "x-originating-ip",
        "x-remote-ip",
        "x-remote-addr",
        # Hop-by-hop (RFC 9110 section 7.6.1) and framing: the client's, never the line's.
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)
#: Prefixes of header names refused as `ROUTING_HEADERS` are (lower case): X-Forwarded-For,
#: -Host, -Proto, -Prefix...; X-Original-URL, -Host...; X-Rewrite-URL; Proxy-Authorization,
#: Proxy-Connection...
ROUTING_PREFIXES = ("x-forwarded", "x-original-", "x-rewrite-", "proxy-")
_FIELDS = frozenset({"custom_id", "method", "url", "body", "headers", "cost"})
# A custom_id longer than this is surely a mistake (and would bloat every structure keyed by it).
_MAX_ID = 512
# RFC 9110 token characters: what a header name may be made of (as config.py checks --header).
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
# Header names already found valid: a file's lines mostly repeat the same few (bounded, as a
# file could also give every line names of its own).
_GOOD_NAMES: set[str] = set()
_GOOD_NAMES_KEPT = 1024
# Each line's url joined to the base URL, remembered: most lines of a file repeat one url.
_JOINED: dict[tuple[str, str | None], str] = {}
_JOINED_KEPT = 1024
# What a file saved by some Windows editors starts with; it is not part of the first line.
_BOM = b"\xef\xbb\xbf"
# JSON's own names for what a line holds, for messages (not Python's: "list", "NoneType").
_JSON_TYPES = {list: "a JSON array", str: "a JSON string", bool: "JSON true or false"}
_JSON_TYPES |= {int: "a JSON number", float: "a JSON number", type(None): "JSON null"}


@dataclass(frozen=True, slots=True)
class Request:
    """One request to send, read from line `line` (1-based) of the requests file.

    `body` is the JSON to send, already encoded (``None``: no body); `cost` is the token
    estimate (or the line's own ``"cost"``); `named_by_line` says the id was made up from the
    line number because the line had none.
    """

    line: int
    custom_id: str
    method: str
    url: str
    body: bytes | None
    headers: tuple[tuple[str, str], ...]
    cost: float
    named_by_line: bool = False
    cost_given: bool = False  # the line's own "cost": the answer's usage does not replace it


@dataclass(frozen=True, slots=True)
class InvalidLine:
    """A line that cannot be sent; it is written to the results as a failure, with `message`."""

    line: int
    custom_id: str
    message: str
    named_by_line: bool = False


def estimate_tokens(body: Any, encoded: bytes | None) -> int:
    """Return the tokens a body is likely to be charged (see the module docstring).

    >>> estimate_tokens({"messages": [{"role": "user", "content": "12345678"}]}, None)
    18
    >>> estimate_tokens({"n": 1}, b'{"n":1}')
    2
    """
    if isinstance(body, dict) and isinstance(body.get("messages"), list):
        chars = sum(_content_chars(m) for m in body["messages"])
        return math.ceil(chars / 4) + _max_tokens(body)
    return math.ceil(len(encoded or b"") / 4)


def _content_chars(message: object) -> int:
    if not isinstance(message, dict):
        return 0
    content = message.get("content")
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        return sum(
            len(part["text"])
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return 0


def _max_tokens(body: dict[str, Any]) -> int:
    # max_completion_tokens is OpenAI's newer name and wins when both are set.
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return DEFAULT_MAX_TOKENS


def join_url(url: str, base_url: str | None, *, line: int) -> str | None:
    """Return the absolute URL to call, or ``None`` if `url` is outside `base_url`.

    Raises `InputError` for a relative url with no base URL: no line can be sent then, so the
    whole run is refused before anything is sent.
    """
    if url.startswith(("http://", "https://")):
        if base_url is None or url == base_url or url.startswith(base_url.rstrip("/") + "/"):
            return url
        return None
    if base_url is None:
        msg = (
            f"line {line}: the url {url!r} is relative and no --base-url was given; pass"
            " --base-url with the API's address, e.g. --base-url https://api.openai.com"
        )
        raise InputError(msg)
    base = base_url.rstrip("/")
    # A base URL with a path (the OpenAI SDK's ``https://api.openai.com/v1``) and a url that
    # starts with it (a batch file's ``/v1/chat/completions``): the path is not doubled.
    scheme_end = base.find("://")
    path_start = base.find("/", scheme_end + 3) if scheme_end >= 0 else -1
    if path_start >= 0:
        base_path = base[path_start:]
        if url == base_path or url.startswith(base_path + "/"):
            return base[:path_start] + url
    return base + "/" + url.lstrip("/")


# msgspec writes JSON several times faster than the standard library (docs/decisions.md); a
# line is read by `conveyor._json.loads`, which turns every way a decode fails into words.
_encode = msgspec.json.Encoder().encode


def parse_line(
    raw: bytes,
    line: int,
    *,
    base_url: str | None = None,
    default_url: str | None = None,
    identify_only: bool = False,
) -> Request | InvalidLine | None:
    """Read line number `line` (1-based) of a requests file; ``None`` for a blank line.

    Never raises for a bad line: it becomes an `InvalidLine` whose message names the line and
    the fix. Only a relative url with no `base_url` raises (`InputError`), since then no line
    could be sent. `identify_only` skips encoding the body and estimating its cost (``body``
    is then None and ``cost`` 0): the checking pass over the input needs only ids and validity.
    """
    if line == 1:
        raw = raw.removeprefix(_BOM)
    try:
        data = loads(raw)
    except BadJSON as exc:
        # Only a line that is not JSON pays for finding out whether it is blank.
        try:
            blank = not raw.decode().strip()
        except UnicodeDecodeError:
            blank = False
        return None if blank else _invalid(line, None, exc.problem)
    if not isinstance(data, dict):
        return _invalid(line, None, f"is {_JSON_TYPES.get(type(data), 'not JSON')}, not an object")
    if "body" in data and data.keys() <= _FIELDS:
        return _request_line(
            data, line, base_url=base_url, default_url=default_url, encode=not identify_only
        )
    if default_url is None:
        return _invalid(
            line,
            data.get("custom_id"),
            'is not a request: expected {"custom_id", "method", "url", "body"} (the OpenAI'
            " Batch format); to send bare JSON bodies, pass --url PATH",
        )
    # A bare body, sent as it is to the default url.
    return _build(
        line, None, "POST", default_url, data, (), None, base_url=base_url, encode=not identify_only
    )


def _request_line(
    data: dict[str, Any], line: int, *, base_url: str | None, default_url: str | None, encode: bool
) -> Request | InvalidLine:
    custom_id = data.get("custom_id")
    if custom_id is not None and not (isinstance(custom_id, str) and 0 < len(custom_id) <= _MAX_ID):
        return _invalid(
            line, None, f"has custom_id {json.dumps(custom_id)[:40]}: it must be a non-empty string"
        )
    method = data.get("method", "POST")
    if not isinstance(method, str) or method.upper() not in METHODS:
        return _invalid(
            line, custom_id, f"has method {method!r}: use one of {', '.join(sorted(METHODS))}"
        )
    url = data.get("url", default_url)
    if not isinstance(url, str) or not url:
        return _invalid(line, custom_id, 'has no "url": add one, or pass --url PATH')
    headers = data.get("headers") or {}
    problem = headers_problem(headers)
    if problem is not None:
        return _invalid(line, custom_id, problem)
    cost = data.get("cost")
    if cost is not None and (
        isinstance(cost, bool) or not isinstance(cost, int | float) or not _finite(cost) or cost < 0
    ):
        shown = repr(cost)[:40]
        return _invalid(line, custom_id, f'has "cost" {shown}: it must be a number of tokens >= 0')
    pairs = tuple(headers.items())
    return _build(
        line,
        custom_id,
        method.upper(),
        url,
        data["body"],
        pairs,
        cost,
        base_url=base_url,
        encode=encode,
    )


def _build(
    line: int,
    custom_id: str | None,
    method: str,
    url: str,
    body: Any,
    headers: tuple[tuple[str, str], ...],
    cost: float | None,
    *,
    base_url: str | None,
    encode: bool = True,
) -> Request | InvalidLine:
    joined = _JOINED.get((url, base_url))
    if joined is not None:
        target: str | None = joined
    else:
        target = join_url(url, base_url, line=line)
        if target is not None and len(_JOINED) < _JOINED_KEPT:
            _JOINED[url, base_url] = target
    if target is None:
        return _invalid(
            line,
            custom_id,
            f"has the url {url!r}, outside --base-url {base_url}: the run sends only to"
            " --base-url, so that its headers (credentials) go nowhere else; make the url"
            " relative",
        )
    encoded = None
    estimate: float = 0.0
    if encode:
        encoded = None if body is None else _encode(body)
        estimate = estimate_tokens(body, encoded) if cost is None else cost
        if not _finite(estimate):  # an integer max_tokens past the range of a float
            return _invalid(
                line, custom_id, "asks for more tokens than any limit can count: lower max_tokens"
            )
    return Request(
        line=line,
        custom_id=custom_id or f"line-{line}",
        method=method,
        url=target,
        body=encoded,
        headers=headers,
        cost=float(estimate),
        named_by_line=custom_id is None,
        cost_given=cost is not None,
    )


def _finite(number: float) -> bool:
    """Whether `number` is finite as a float (a JSON integer may be too big to be one)."""
    try:
        return math.isfinite(number)
    except OverflowError:
        return False


def is_routing_header(name: str) -> bool:
    """Whether a request line may not set the header `name` (any case): see `ROUTING_HEADERS`.

    >>> is_routing_header("X-Forwarded-Host"), is_routing_header("OpenAI-Beta")
    (True, False)
    """
    lower = name.lower()
    return lower in ROUTING_HEADERS or lower.startswith(ROUTING_PREFIXES)


def credential_headers(names: Iterable[str]) -> list[str]:
    """The names among `names` that carry credentials (`CREDENTIAL_HEADERS`, any case), sorted."""
    return sorted(name for name in names if name.lower() in CREDENTIAL_HEADERS)


def headers_problem(headers: object) -> str | None:
    """What is wrong with a line's own headers (``"has ..."``), or None.

    Refused: anything but ``{"Name": "value"}`` strings, a name aiohttp would refuse, a value
    with a line break or NUL, and a header that chooses where the request lands
    (`is_routing_header`).

    >>> headers_problem({"X-Forwarded-Host": "admin.internal"})[:40]
    'has the header X-Forwarded-Host: a reque'
    """
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        return 'has "headers" that are not {"Name": "value"} strings'
    for name, value in headers.items():
        if name not in _GOOD_NAMES:
            if not _HEADER_NAME.match(name):
                return f"has the header name {name[:40]!r}: use letters, digits and '-'"
            if is_routing_header(name):
                return (
                    f"has the header {name}: a request may not choose where it is delivered or"
                    " how it is framed (Host, Forwarded, X-Forwarded-*, X-Real-IP, Connection,"
                    " Content-Length, Proxy-* and the like are refused); remove it: the base"
                    " URL names the host, and the client sets the rest"
                )
            if len(_GOOD_NAMES) < _GOOD_NAMES_KEPT:
                _GOOD_NAMES.add(name)
        if "\r" in value or "\n" in value or "\0" in value:
            return f"has a line break or NUL in the value of the header {name}: remove it"
    return None


def _invalid(line: int, custom_id: object, problem: str) -> InvalidLine:
    if isinstance(custom_id, str) and 0 < len(custom_id) <= _MAX_ID:
        return InvalidLine(line=line, custom_id=custom_id, message=f"line {line} {problem}")
    return InvalidLine(
        line=line, custom_id=f"line-{line}", message=f"line {line} {problem}", named_by_line=True
    )
