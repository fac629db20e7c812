"""Which ``Host`` a service without API keys answers: loopback names only (DNS rebinding).

Without keys, the service answers anyone who reaches it, and `conveyor serve` binds it to
loopback so that only this machine can. A web page the local user opens could still reach it:
its script calls ``http://evil.example:8000``, whose DNS name the attacker then points at
127.0.0.1 (DNS rebinding), and the browser, seeing the same origin, lets the page read the
answers and drive the API, spending the connections' credentials. What gives it away is the
``Host`` header: the browser sends the attacker's name, never ``localhost``. So, while no key
is configured, a request is answered only when its ``Host`` (any port) is:

- a loopback name: ``localhost``, or a loopback address (``127.0.0.1``, any of 127.0.0.0/8,
  ``[::1]``);
- the address the request reached (the ASGI ``server``, e.g. the LAN address of a service
  bound to ``0.0.0.0`` by its embedding app): an address, never a name, so no rebinding;
- a name the operator allowed (``allowed_hosts``, ``conveyor serve --allowed-host``): the
  name a reverse proxy forwards, for a deployment behind one without keys.

Anything else, a missing, repeated or malformed ``Host`` too, is answered 421 (Misdirected
Request) as problem+json, before any route, the dashboard or its files. With keys, a page
cannot call the API without one, and any ``Host`` is accepted.
"""

from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING

from .._loopback import is_loopback
from .problems import problem_response

if TYPE_CHECKING:
    from collections.abc import Iterable

    from starlette.types import ASGIApp, Receive, Scope, Send

    from .keys import KeyRing

__all__ = ["HostGuard", "check_allowed_host", "host_allowed", "host_of"]

# A host name (RFC 1123 labels; "_" too, as container names have it) or an IPv4 address, in
# lower case, without a port.
_LABEL = r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?"
_NAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*$")
_PORT = re.compile(r"^[0-9]{1,5}$")


def host_of(value: str) -> str | None:
    """The host of a ``Host`` header (lower case, an IPv6 address without brackets), or None.

    >>> host_of("LocalHost:8000"), host_of("[::1]:8000"), host_of("a:b:c"), host_of("")
    ('localhost', '::1', None, None)
    """
    value = value.strip()
    if value.startswith("["):
        inside, bracket, port = value[1:].partition("]")
        if not bracket or (port and not (port[:1] == ":" and _PORT.match(port[1:]))):
            return None
        try:
            return str(ipaddress.IPv6Address(inside))
        except ValueError:
            return None
    host, colon, port = value.partition(":")
    if colon and not _PORT.match(port):
        return None
    host = host.lower()
    return host if _NAME.match(host) else None


def _same_address(host: str, server: str | None) -> bool:
    """Whether `host` is an IP address and the one the request reached (never a name)."""
    if server is None:
        return False
    try:
        return ipaddress.ip_address(host) == ipaddress.ip_address(server.strip("[]"))
    except ValueError:
        return False


def host_allowed(host: str, *, server: str | None, allowed: frozenset[str]) -> bool:
    """Whether a keyless service answers a request for `host` (see the module docstring). Pure.

    `host` comes from `host_of`; `server` is the address the request reached; `allowed` the
    operator's names, lower case.

    >>> host_allowed("127.0.0.1", server=None, allowed=frozenset())
    True
    >>> host_allowed("evil.example", server="127.0.0.1", allowed=frozenset())
    False
    """
    return is_loopback(host) or host in allowed or _same_address(host, server)


def check_allowed_host(value: object, *, where: str) -> str:
    """`value` as an allowed host (lower case), or `ValueError` saying what to pass instead."""
    text = value.strip().lower() if isinstance(value, str) else ""
    host: str | None = text if _NAME.match(text) else None
    if host is None:
        try:
            host = str(ipaddress.IPv6Address(text.removeprefix("[").removesuffix("]")))
        except ValueError:
            msg = (
                f"{where}={value!r}: pass a host name or address without scheme, port or"
                " wildcard, e.g. jobs.example.internal (the name that clients, or the proxy"
                " before the service, put in the Host header)"
            )
            raise ValueError(msg) from None
    return host


def _refusal(header: str | None) -> str:
    if header is None:
        return (
            "this service has no API keys, so it answers only requests that name it by a"
            " loopback address in one Host header (e.g. Host: 127.0.0.1:8000); send one"
        )
    shown = header[:100]
    return (
        f"this service has no API keys, so it answers only requests addressed to a loopback"
        f" name (localhost, 127.0.0.1, [::1]) or an allowed host, and this one is addressed to"
        f" {shown!r}: a web page must not reach it under another name (DNS rebinding). Call it"
        " as http://127.0.0.1:PORT; behind a reverse proxy, allow the name the proxy sends"
        " (`conveyor serve --allowed-host NAME`, or allowed_hosts in the config), or add API"
        " keys (`conveyor keys add --tenant NAME`)"
    )


class HostGuard:
    """ASGI middleware: without API keys, answer 421 to a ``Host`` that is not allowed.

    Args:
        app: the app it guards.
        keys: the service's keys; while they are enabled any ``Host`` passes.
        allowed_hosts: names allowed besides the loopback ones (lower case, no port).
    """

    def __init__(self, app: ASGIApp, *, keys: KeyRing, allowed_hosts: Iterable[str] = ()) -> None:
        self.app = app
        self.keys = keys
        self.allowed = frozenset(allowed_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, or answer 421 (http only: the lifespan passes)."""
        if scope["type"] != "http" or self.keys.enabled:
            await self.app(scope, receive, send)
            return
        values = [v for k, v in scope.get("headers", ()) if k == b"host"]
        header = values[0].decode("latin-1") if len(values) == 1 else None
        host = None if header is None else host_of(header)
        server = scope.get("server")
        address = server[0] if isinstance(server, (tuple, list)) and server else None
        if host is not None and host_allowed(host, server=address, allowed=self.allowed):
            await self.app(scope, receive, send)
            return
        await problem_response(421, _refusal(header))(scope, receive, send)
