"""`ScopedCache`: the response cache as the HTTP tasks use it, scoped and redacted both ways.

A backend (`conveyor.llm.cache`) stores whatever it is given under whatever key. The tasks go
through this front instead, which holds the three rules that keep a cache from leaking:

- **Scoped keys.** Every key covers the task's scope (the upstream: a run's base URL, or a
  connection's name and base URL) and the tenant that asks: one tenant's answer is never
  another's hit, and two connections to one URL (two accounts) never share answers.
- **Redacted values.** What is stored is `Response.redacted`: no credential header, and every
  credential the task sends replaced by ``[redacted]`` in the headers and body, the very value
  a job stores as its result. An upstream that echoes the key puts it in neither the cache
  file nor Redis.
- **Redacted hits.** A hit is redacted again as it is read, so an entry written by an older
  Conveyor, or by a process with other credentials, cannot bring a credential back.

Credentials are never part of a key: keys cover the method, url and body, not the headers.

It is also the cache stage of an item's pipeline, the same for ``conveyor run`` and a job's
``http`` task: `recall_request` before the call (a hit is never sent, and the runners hand it
to the engine settled, so it takes no limiter slot), `keep_answer` after an answer that passed
its check.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from ..wire.response import Response
from .cache import CACHE_HEADER, cache_key

if TYPE_CHECKING:
    from collections.abc import Iterable

    from ..wire.redact import Redactor
    from .cache import AnswerCache

__all__ = ["ScopedCache", "Sendable"]


class Sendable(Protocol):
    """What a key is made of: a request's method, url and encoded body (`conveyor.http.Request`)."""

    @property
    def method(self) -> str:
        """The HTTP method."""
        ...

    @property
    def url(self) -> str:
        """The absolute URL."""
        ...

    @property
    def body(self) -> bytes | None:
        """The encoded body (None: no body)."""
        ...


class ScopedCache:
    """Keys in `scope`, answers stored and returned redacted (see the module docstring).

    Args:
        cache: the backend (`conveyor.llm.open_cache`).
        scope: what names the upstream in every key, e.g. ``("connection", name, base_url)``.
        redact: replaces the task's credentials (None: it sends none).
        secret_headers: the names of the headers the task sends its credentials in: never
            stored, in any case, besides `conveyor.wire.redact.CREDENTIAL_HEADERS`.
    """

    __slots__ = ("_redact", "_secret_headers", "backend", "scope")

    def __init__(
        self,
        cache: AnswerCache,
        *,
        scope: tuple[str, ...],
        redact: Redactor | None = None,
        secret_headers: Iterable[str] = (),
    ) -> None:
        self.backend = cache
        self.scope = scope
        self._redact = redact or None
        self._secret_headers = frozenset(name.lower() for name in secret_headers)

    def key(self, method: str, url: str, body: bytes | None, *, tenant: str = "") -> str:
        """The key of a request sent by `tenant` (``""``: a run, which has none)."""
        return cache_key((*self.scope, "tenant", tenant), method, url, body)

    def redacted(self, response: Response) -> Response:
        """`response` as it may be stored: what `keep` stores and a job's result is."""
        return response.redacted(self._redact, secret_headers=self._secret_headers)

    async def recall(self, key: str) -> Response | None:
        """The answer stored under `key`, redacted, marked as a hit; None if there is none."""
        hit = await self.backend.fetch(key)
        if hit is None:
            return None
        found = self.redacted(Response(*hit))
        return Response(found.status_code, {**found.headers, CACHE_HEADER: "hit"}, found.body)

    async def keep(self, key: str, response: Response) -> Response:
        """Store `response`, redacted, under `key`; return what was stored."""
        stored = self.redacted(response)
        await self.backend.store(key, stored.status_code, stored.headers, stored.body)
        return stored

    async def recall_request(self, request: Sendable, *, tenant: str = "") -> Response | None:
        """The answer stored for `request` sent by `tenant` (redacted, marked), or None."""
        return await self.recall(self.key(request.method, request.url, request.body, tenant=tenant))

    async def keep_answer(
        self, request: Sendable, response: Response, *, tenant: str = ""
    ) -> Response:
        """Store a passed answer to `request` sent by `tenant`; return it as stored (redacted)."""
        key = self.key(request.method, request.url, request.body, tenant=tenant)
        return await self.keep(key, response)

    async def check(self) -> None:
        """Raise `ConfigError` if the backend cannot be reached (a Redis that does not answer)."""
        await self.backend.check()

    async def aclose(self) -> None:
        """Close the backend."""
        await self.backend.aclose()
