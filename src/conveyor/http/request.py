"""The request file format, pure: one JSON line in, a `Request` (or an `InvalidLine`) out.

A line is a request in the OpenAI Batch API's format::

    {"custom_id": "req-1", "method": "POST", "url": "/v1/chat/completions", "body": {...}}

or in Anthropic's Message Batches format, a POST of ``params`` to ``/v1/messages``::

    {"custom_id": "req-1", "params": {"model": ..., "max_tokens": ..., "messages": [...]}}

either with optional ``"headers": {"Name": "value"}`` and ``"cost": N`` (tokens, replacing the
estimate). A Messages line is checked before it is sent (`conveyor.http.apis`). A line may
not set a header that chooses where its request lands or how it is framed
(`conveyor.http.headers`: ``Host``, ``Forwarded``, ``X-Forwarded-*``, hop-by-hop headers,
...): the base URL names the host, and the client frames the message. When a default url is given
(``--url``), a line may instead be a bare JSON body, sent to that url. A line without a
``custom_id`` is named ``line-N`` after its line number.

Token estimate (what rate limiters charge before they know the answer's length): the prompt's
``ceil(characters / 4)`` plus ``max_tokens`` for a conversation, ``ceil(len(body JSON) / 4)``
for any other body (`conveyor.llm.tokens`, re-exported here as `estimate_tokens`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, TypedDict, Unpack

import msgspec

from .._json import BadJSON, loads
from ..llm.tokens import DEFAULT_MAX_TOKENS, estimate_tokens, output_bound
from .apis import MESSAGES_URL, Api, api_of, messages_problem
from .errors import InputError
from .headers import (
    CREDENTIAL_HEADERS,
    ROUTING_HEADERS,
    ROUTING_PREFIXES,
    credential_headers,
    headers_problem,
    is_routing_header,
)

__all__ = [
    "CREDENTIAL_HEADERS",
    "DEFAULT_MAX_TOKENS",
    "METHODS",
    "ROUTING_HEADERS",
    "ROUTING_PREFIXES",
    "InvalidLine",
    "ParseOptions",
    "Request",
    "credential_headers",
    "estimate_tokens",
    "headers_problem",
    "is_routing_header",
    "join_url",
    "parse_line",
    "parse_value",
]

#: The HTTP methods a line may use.
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
_FIELDS = frozenset({"custom_id", "method", "url", "body", "headers", "cost"})
# Anthropic's Message Batches request: {"custom_id", "params"}, with our headers and cost.
_PARAMS_FIELDS = frozenset({"custom_id", "params", "headers", "cost"})
# A custom_id longer than this is surely a mistake (and would bloat every structure keyed by it).
_MAX_ID = 512
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
    estimate (or the line's own ``"cost"``), of which `output_tokens` are the answer's bound
    (``max_tokens``) and the rest its prompt; `api` is the API the url calls
    (`conveyor.http.apis.api_of`); `named_by_line` says the id was made up from the line
    number because the line had none. `model` is the body's ``"model"`` and `most_tokens` the
    most input and output tokens its body may use (its prompt, its ``max_tokens``), whatever
    its ``"cost"``: what a spend budget prices (`conveyor.llm.PriceTable.bound_usd`).

    Everything is computed once, when the line is read: an attempt, a retry, the limiter's
    cost and the budget's bound all read this value, never the line or the body again.
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
    output_tokens: float = 0.0
    api: Api = ""
    model: str | None = None
    most_tokens: tuple[float, float] = (0.0, 0.0)


@dataclass(frozen=True, slots=True)
class InvalidLine:
    """A line that cannot be sent; it is written to the results as a failure, with `message`."""

    line: int
    custom_id: str
    message: str
    named_by_line: bool = False


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
        anthropic = api_of(url) in ("messages", "anthropic")
        example = "https://api.anthropic.com" if anthropic else "https://api.openai.com"
        msg = (
            f"line {line}: the url {url!r} is relative and no --base-url was given; pass"
            f" --base-url with the API's address, e.g. --base-url {example}"
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


class ParseOptions(TypedDict, total=False):
    """How a line is read: `parse_line`'s keywords, as `parse_value` takes them."""

    base_url: str | None
    default_url: str | None
    identify_only: bool
    job: bool


def parse_line(
    raw: bytes,
    line: int,
    *,
    base_url: str | None = None,
    default_url: str | None = None,
    identify_only: bool = False,
    job: bool = False,
) -> Request | InvalidLine | None:
    """Read line number `line` (1-based) of a requests file; ``None`` for a blank line.

    Never raises for a bad line: it becomes an `InvalidLine` whose message names the line and
    the fix. Only a relative url with no `base_url` raises (`InputError`), since then no line
    could be sent. `identify_only` skips encoding the body and estimating its cost (``body``
    is then None and ``cost`` 0): the checking pass over the input needs only ids and validity.
    `job`: the line is an item of a job's ``http`` task, whose messages then speak of the task,
    not of ``conveyor run``'s flags, and do not show the base URL (a tenant need not know it).
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
    return parse_value(
        data,
        line,
        base_url=base_url,
        default_url=default_url,
        identify_only=identify_only,
        job=job,
    )


def parse_value(data: Any, line: int, **options: Unpack[ParseOptions]) -> Request | InvalidLine:
    """`parse_line` for a line already parsed from JSON (a job's stored item): no JSON is read.

    `data` must come from JSON text read by `conveyor._json.loads` (or checked by
    `parse_line` before it was stored): its depth is not checked again.
    """
    if not isinstance(data, dict):
        return _invalid(line, None, f"is {_JSON_TYPES.get(type(data), 'not JSON')}, not an object")
    base_url, default_url = options.get("base_url"), options.get("default_url")
    encode = not options.get("identify_only", False)
    words = _JOB if options.get("job", False) else _RUN
    if "body" in data and data.keys() <= _FIELDS:
        return _request_line(data, line, base_url, default_url, encode=encode, words=words)
    if "params" in data and data.keys() <= _PARAMS_FIELDS:
        return _params_line(data, line, base_url=base_url, encode=encode, words=words)
    if default_url is None:
        return _invalid(line, data.get("custom_id"), _not_a_request(data, words))
    # A bare body, sent as it is to the default url.
    return _build(
        line,
        None,
        "POST",
        default_url,
        data,
        (),
        None,
        base_url=base_url,
        encode=encode,
        words=words,
    )


@dataclass(frozen=True, slots=True)
class _Words:
    """How a line's problems are told: to ``conveyor run``'s user, or to a job's submitter."""

    #: What to add to "has no url": a flag that gives every line one, or nothing.
    no_url: str
    #: How to send bare JSON bodies, or nothing.
    bare: str
    #: Why a url outside the base URL is refused (``{base}``: the base URL, where shown).
    outside: str


_RUN = _Words(
    no_url=", or pass --url PATH",
    bare="; to send bare JSON bodies, pass --url PATH",
    outside="outside --base-url {base}: the run sends only to --base-url, so that its headers"
    " (credentials) go nowhere else; make the url relative",
)
_JOB = _Words(
    no_url=' (a path, e.g. "/v1/chat/completions")',
    bare="",
    outside="outside the task's base URL: a job sends only there, so that the connection's"
    " headers (credentials) go nowhere else; make the url relative (a path)",
)


def _not_a_request(data: dict[str, Any], words: _Words) -> str:
    """Why a line with neither format's fields is not a request, and how to write one."""
    formats = (
        '{"custom_id", "method", "url", "body"} (the OpenAI Batch format) or'
        ' {"custom_id", "params"} (the Anthropic Message Batches format)'
    )
    if "params" in data and "body" in data:
        return f'has both "params" and "body": a line is one of {formats}'
    extra = sorted(data.keys() - (_PARAMS_FIELDS if "params" in data else _FIELDS))
    if ("params" in data or "body" in data) and extra:
        shown = ", ".join(json.dumps(k)[:40] for k in extra[:3])
        return f"has the field(s) {shown}, which no request line has: expected {formats}"
    return f"is not a request: expected {formats}{words.bare}"


def _params_line(
    data: dict[str, Any], line: int, *, base_url: str | None, encode: bool, words: _Words
) -> Request | InvalidLine:
    """A line in Anthropic's batch format: a POST of its ``params`` to /v1/messages."""
    if not isinstance(data["params"], dict):
        return _invalid(
            line,
            data.get("custom_id"),
            'has "params" that are not a JSON object: give the Messages request, as in'
            ' {"custom_id": "a", "params": {"model": ..., "max_tokens": ..., "messages": [...]}}',
        )
    request = {k: v for k, v in data.items() if k != "params"}
    request |= {"method": "POST", "url": MESSAGES_URL, "body": data["params"]}
    return _request_line(request, line, base_url, None, encode=encode, words=words)


def _request_line(
    data: dict[str, Any],
    line: int,
    base_url: str | None,
    default_url: str | None,
    *,
    encode: bool,
    words: _Words,
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
        return _invalid(line, custom_id, f'has no "url": add one{words.no_url}')
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
        words=words,
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
    encode: bool,
    words: _Words,
) -> Request | InvalidLine:
    joined = _JOINED.get((url, base_url))
    if joined is not None:
        target: str | None = joined
    else:
        target = join_url(url, base_url, line=line)
        if target is not None and len(_JOINED) < _JOINED_KEPT:
            _JOINED[url, base_url] = target
    if target is None:
        outside = words.outside.format(base=base_url)
        return _invalid(line, custom_id, f"has the url {url!r}, {outside}")
    api = api_of(target)
    if api == "messages" and method == "POST":
        problem = messages_problem(body)
        if problem is not None:
            return _invalid(line, custom_id, problem)
    encoded = None
    estimate: float = 0.0
    output: float = 0.0
    most = (0.0, 0.0)
    if encode:
        encoded = None if body is None else _encode(body)
        from_body = estimate_tokens(body, encoded)
        estimate = from_body if cost is None else cost
        output = output_bound(body)
        if not _finite(estimate) or not _finite(output) or not _finite(from_body):
            # a max_tokens past a float's range
            return _invalid(
                line, custom_id, "asks for more tokens than any limit can count: lower max_tokens"
            )
        most = (max(float(from_body) - float(output), 0.0), float(output))
        output = min(float(output), float(estimate))
    model = body.get("model") if isinstance(body, dict) else None
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
        output_tokens=output,
        api=api,
        model=model if isinstance(model, str) else None,
        most_tokens=most,
    )


def _finite(number: float) -> bool:
    """Whether `number` is finite as a float (a JSON integer may be too big to be one)."""
    try:
        return math.isfinite(number)
    except OverflowError:
        return False


def _invalid(line: int, custom_id: object, problem: str) -> InvalidLine:
    if isinstance(custom_id, str) and 0 < len(custom_id) <= _MAX_ID:
        return InvalidLine(line=line, custom_id=custom_id, message=f"line {line} {problem}")
    return InvalidLine(
        line=line, custom_id=f"line-{line}", message=f"line {line} {problem}", named_by_line=True
    )
