"""Which headers a request line may set of its own, pure: the rules every path shares.

``conveyor run``, a job's items and a batch's lines all read request lines
(`conveyor.http.parse_line`), and a line's own headers are checked here: ``{"Name": "value"}``
strings, names aiohttp accepts, no line break, and none that chooses where the request lands
or how it is framed (`is_routing_header`). Which names carry credentials
(`CREDENTIAL_HEADERS`) is `conveyor.http.redact`'s list; the job paths refuse them in items.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from .redact import CREDENTIAL_HEADERS

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "CREDENTIAL_HEADERS",
    "ROUTING_HEADERS",
    "ROUTING_PREFIXES",
    "credential_headers",
    "headers_problem",
    "is_routing_header",
]

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
# RFC 9110 token characters: what a header name may be made of (as config.py checks --header).
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
# Header names already found valid: a file's lines mostly repeat the same few (bounded, as a
# file could also give every line names of its own).
_GOOD_NAMES: set[str] = set()
_GOOD_NAMES_KEPT = 1024


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
