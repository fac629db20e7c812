"""How a batch reaches its upstream, for both batch APIs: the connection, and the job's options.

A batch (OpenAI's or Anthropic's) is a job of the built-in ``http`` task of one of the
operator's connections: the request never names a URL, only, when there are several, which
connection (`pick_connection`). Its requests run with `BATCH_OPTIONS`: the connection's own
limiter paces them, so the job's concurrency is only a ceiling.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..jobs.model import JobOptions

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["BATCH_ATTEMPTS", "BATCH_CONCURRENCY", "BATCH_OPTIONS", "pick_connection"]

#: Attempts per request of a batch (transient errors only: 408, 425, 429, 5xx, timeouts).
BATCH_ATTEMPTS = 6
#: Requests of one batch in flight at most (the connection's limiter paces them).
BATCH_CONCURRENCY = 64
#: The options of a batch's job.
BATCH_OPTIONS = JobOptions(concurrency=BATCH_CONCURRENCY, attempts=BATCH_ATTEMPTS)


def pick_connection(
    base_urls: Mapping[str, str], chosen: str | None, *, how: str
) -> tuple[str | None, str]:
    """The http task of the batch's connection, or None and why not.

    `base_urls` maps the service's task names to their base URLs (the connections are the
    ``http:NAME`` ones); `chosen` is the name the caller gave, if any; `how` says how the
    caller chooses one (named when there are several and it gave none).

    >>> pick_connection({"http:mock": "http://127.0.0.1:1"}, None, how="a header")
    ('http:mock', '')
    >>> pick_connection({"http:a": "x", "http:b": "y"}, None, how="the header X")[1]
    'this service has several connections (a, b): choose one with the header X'
    """
    names = sorted(t.removeprefix("http:") for t in base_urls if t.startswith("http:"))
    if chosen is None:
        if len(names) == 1:
            return f"http:{names[0]}", ""
        if not names:
            return None, "this service has no connection to send batches to; ask the operator"
        return (
            None,
            f"this service has several connections ({', '.join(names)}): choose one with {how}",
        )
    if chosen not in names:
        return None, f"no connection {chosen!r}: this service has {', '.join(names) or 'none'}"
    return f"http:{chosen}", ""
