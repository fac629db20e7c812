"""`shown_url`: a URL as it may be shown, logged or stored, its credentials taken out. Pure.

Store and Redis URLs carry passwords (``postgresql://app:s3cret@db/jobs``,
``redis://:s3cret@cache:6379/0``, or ``?password=s3cret``). Every place that prints, logs,
stores or puts a URL into an error message goes through `shown_url`, so the rule lives here
once: the userinfo (user and password) becomes ``***``, and so does the value of any query
parameter whose name says it holds a secret.

The parsing is by hand, not by `urllib.parse.urlsplit`: the URL shown is often one that failed
to parse or to connect (a bad port, an unencoded ``/`` or ``#`` in the password), and this
must neither raise nor let part of a password through then.
"""

from __future__ import annotations

from urllib.parse import unquote

__all__ = ["HIDDEN", "hide_secrets", "shown_url"]

#: What replaces a URL's userinfo and a secret query value.
HIDDEN = "***"

# A query parameter whose name contains one of these holds a secret (``password``,
# ``sslpassword``, ``passwd``, ``pwd``, ``token``, ``auth_token``, ``api_key``, ``secret``).
_SECRET_NAMES = ("pass", "pwd", "secret", "token", "key", "auth", "credential")


def _secret_name(name: str) -> bool:
    lower = name.lower()
    return any(part in lower for part in _SECRET_NAMES)


def _shown_query(query: str) -> str:
    pairs = []
    for pair in query.split("&"):
        name, sep, _ = pair.partition("=")
        pairs.append(f"{name}={HIDDEN}" if sep and _secret_name(name) else pair)
    return "&".join(pairs)


def shown_url(url: str) -> str:
    """`url` with its userinfo, and any secret query value, replaced by ``***``.

    Anything that is not a URL with ``://`` (a SQLite path) is returned as it is.

    >>> shown_url("postgresql://app:s3cret@db:5432/jobs?schema=conveyor")
    'postgresql://***@db:5432/jobs?schema=conveyor'
    >>> shown_url("redis://:s3cret@127.0.0.1:6379/0?ttl=60")
    'redis://***@127.0.0.1:6379/0?ttl=60'
    >>> shown_url("postgresql://db/jobs?user=app&password=s3cret")
    'postgresql://db/jobs?user=app&password=***'
    >>> shown_url("redis://127.0.0.1:6379/0")
    'redis://127.0.0.1:6379/0'
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    # The userinfo ends at the last "@" before the query or fragment: a password with an
    # unencoded "/" would end the authority early for a URL parser, not here. A password with
    # an unencoded "?" or "#" leaves no "/" before them: then the last "@" anywhere ends it
    # (a query value with an "@" in a URL with no path is hidden too: shown too little, never
    # too much).
    end = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    at = rest.rfind("@", 0, end)
    if at < 0 and "/" not in rest[:end]:
        at = rest.rfind("@")
    if at >= 0:
        rest = f"{HIDDEN}@{rest[at + 1 :]}"
    rest, hash_sep, fragment = rest.partition("#")
    head, query_sep, query = rest.partition("?")
    if query_sep:
        head += query_sep + _shown_query(query)
    return f"{scheme}{sep}{head}{hash_sep}{fragment}"


def _secrets(url: str) -> set[str]:
    """The password of `url`'s userinfo and its secret query values, as written and decoded."""
    _, sep, rest = url.partition("://")
    if not sep:
        return set()
    found: set[str] = set()
    end = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    at = rest.rfind("@", 0, end)
    if at < 0 and "/" not in rest[:end]:
        at = rest.rfind("@")
    if at >= 0:
        _, colon, password = rest[:at].partition(":")
        if colon:
            found.add(password)
    query = rest[at + 1 :].partition("#")[0].partition("?")[2]
    for pair in query.split("&"):
        name, sep, value = pair.partition("=")
        if sep and _secret_name(name):
            found.add(value)
    return found | {unquote(s) for s in found}


def hide_secrets(text: str, url: str) -> str:
    """`text` (a driver's message about `url`) with `url`'s password and secret values hidden.

    A driver that refuses a URL may quote part of it back; what `shown_url` hides must not
    come back that way. Values shorter than 3 characters are left: they would mangle the text.

    >>> hide_secrets('bad value "s3cret" for port', "postgresql://u:s3cret@db:x/jobs")
    'bad value "***" for port'
    """
    for secret in sorted(_secrets(url), key=len, reverse=True):
        if len(secret) >= 3:  # see the docstring
            text = text.replace(secret, HIDDEN)
    return text
