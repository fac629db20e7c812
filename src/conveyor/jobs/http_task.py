"""The built-in ``http`` task: the batch runner's request lines, run as a job's items.

An item is one request line of ``conveyor run`` (`conveyor.http.parse_line`): the OpenAI
Batch API's ``{"custom_id", "method", "url", "body"}`` with optional ``headers`` and ``cost``.
The task sends it with `conveyor.http.HttpTask` and stores the answer as the item's result
(``{"status_code", "headers", "body"}``); a non-2xx answer fails the item with
`HTTPStatusError` (retried by the job's ``attempts`` when it is 408/425/429/5xx).

Safety: the operator fixes `base_url` and the headers (credentials) on the worker's app; a
job's items can only name paths under that URL (same scheme, host and port, no ``..``), may
not carry credential headers of their own (`CREDENTIAL_HEADERS`) nor headers that choose where
the request lands (``Host``, ``X-Forwarded-*``...: `conveyor.http.request.is_routing_header`),
and the operator's headers are never stored: an answer or an error that echoes one has it
replaced by ``[redacted]`` before it is recorded. The base URL itself may not carry
credentials (``user:password@``): it is named in errors.

With a response cache (a connection's ``cache`` setting), a request already answered for the
same tenant through the same task is not sent: the stored answer is the item's result, marked
by the ``x-conveyor-cache: hit`` header. The worker asks before the item takes a limiter slot
(`recall`), as ``conveyor run`` does, and a call whose value was asked about does not ask
again. Only successful answers are stored, and only as they are stored as results: redacted
(`conveyor.llm.scoped_cache.ScopedCache`, the one cache stage of both). The task counts tokens
and cost in `tally`.

Limits: an item costs what ``conveyor run`` charges its line (`conveyor.http.setup.request_costs`):
its tokens, input tokens (the prompt's estimate) and output tokens (``max_tokens``), or its
line's own ``cost``; each limiter of the job takes the dimensions it limits (an OpenAI-shaped
connection its tokens, an Anthropic-shaped one its input and output apart). The answer's
``usage`` then settles them in every limiter of the attempt, as ``conveyor run`` does by
default: input and output tokens to what was used, a total above the estimate charged, one
below it kept (OpenAI charges ``max_tokens`` up front).

One parse per attempt: the worker reads a stored item once per attempt and hands that one
value to `cost`, `bound_usd` and the call; the task turns it into its `Request` (body encoded,
costs computed) the first time it sees that value, and every later stage of the attempt reads
the same `Request` (`_requests`, keyed by the value's identity: the latest few thousand).
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from .._urls import shown_url
from ..errors import ConfigError
from ..http.client import HttpTask
from ..http.http1 import Http1Transport
from ..http.redact import CREDENTIAL_HEADERS, Redactor
from ..http.request import InvalidLine, credential_headers, parse_line, parse_value
from ..http.setup import CONNECT_TIMEOUT_S, request_costs
from ..http.tally import BatchTally
from ..limits.limiter import Limiter

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ..http.client import Transport
    from ..http.request import Request
    from ..llm.cache import AnswerCache
    from ..llm.scoped_cache import ScopedCache
    from .app import TaskContext

__all__ = ["CREDENTIAL_HEADERS", "HttpJobTask"]

#: The dimensions an item's cost names (`request_costs`).
_DIMENSIONS = ("tokens", "input_tokens", "output_tokens")
#: The item values whose requests are kept (the latest read): more than a worker has in flight.
_READ_KEPT = 4096


class HttpJobTask:
    """Sends one request line per call. `transport` replaces the network in tests.

    `name` is the task's name (``http:<connection>``): with `base_url`, it scopes the cache,
    so two connections to one URL (two accounts) never answer each other's requests.
    """

    def __init__(
        self,
        *,
        base_url: str,
        headers: Mapping[str, str],
        idempotency_header: str | None = None,
        transport: Transport | None = None,
        cache: AnswerCache | None = None,
        name: str = "http",
    ) -> None:
        from ..llm.hooks import AnswerHooks  # noqa: PLC0415 - conveyor.llm imports conveyor.http
        from ..llm.pricing import PriceTable  # noqa: PLC0415
        from ..llm.scoped_cache import ScopedCache  # noqa: PLC0415

        if shown_url(base_url) != base_url:
            msg = (
                f"the http task's base_url {shown_url(base_url)!r} carries credentials"
                " (user:password@): they would be named in every error; send them as a header"
                " instead (--header-env Authorization=ENV_VAR, or a connection's auth_env)"
            )
            raise ConfigError(msg)
        self._base_url = base_url
        self._origin = urlsplit(base_url)[:2]
        self._headers = dict(headers)
        self._redact = Redactor(list(self._headers.values()))
        self._secret = frozenset(name.lower() for name in self._headers)
        self._idempotency_header = idempotency_header
        self._transport = transport
        self._own: Http1Transport | None = None  # the transport opened here, closed here
        self._task: HttpTask | None = None
        self.tally = BatchTally()
        self.prices = PriceTable.default()
        # Counts tokens and cost; the cache is this task's own, whose keys need the tenant.
        self._hooks = AnswerHooks(tally=self.tally, prices=self.prices)
        # The item values read lately, by identity: (the value, its request or why not).
        self._requests: dict[int, tuple[Any, Request | ValueError]] = {}
        # The item values `recall` found no answer for, by identity: their call sends at once.
        self._missed: dict[int, Any] = {}
        self._cache: ScopedCache | None = None
        if cache is not None:
            self._cache = ScopedCache(
                cache,
                scope=("connection", name, base_url),
                redact=self._redact,
                secret_headers=self._secret,
            )

    def _read(self, item: Any) -> Request:
        """The request of `item`, read once per value.

        An entry holds its value, so that its id cannot be another value's while it is kept.
        """
        key = id(item)
        found = self._requests.get(key)
        if found is None or found[0] is not item:
            try:
                found = (item, self._parse(item, 0, raw=False))
            except ValueError as exc:
                found = (item, exc)
            if len(self._requests) >= _READ_KEPT:
                del self._requests[next(iter(self._requests))]  # the oldest
            self._requests[key] = found
        if isinstance(found[1], ValueError):
            raise found[1]
        return found[1]

    def _parse(self, item: Any, index: int, *, raw: bool = True) -> Request:
        """The request of `item`; `raw`: read from its JSON text (depth checked: on submission)."""
        if raw:
            text = json.dumps(item, separators=(",", ":")).encode()
            parsed = parse_line(text, index + 1, base_url=self._base_url, job=True)
        else:
            parsed = parse_value(item, index + 1, base_url=self._base_url, job=True)
        if parsed is None or isinstance(parsed, InvalidLine):
            detail = "is empty" if parsed is None else parsed.message.split(" ", 2)[-1]
            msg = f"the request {detail}"
            raise ValueError(msg)
        target = urlsplit(parsed.url)
        path = unquote(target.path)
        if target[:2] != self._origin or ".." in path.split("/") or "\\" in path:
            msg = (
                f"the request's url {shown_url(parsed.url)!r} leaves {self._base_url}: use a"
                " path under it"
            )
            raise ValueError(msg)
        own = credential_headers(name for name, _ in parsed.headers)
        if own:
            msg = (
                f"the request sets {', '.join(own)}: items may not carry credentials; the"
                " operator's connection adds them"
            )
            raise ValueError(msg)
        return parsed

    def cost(self, item: Any) -> dict[str, float]:
        """The item's cost per token dimension (`request_costs`); nothing for one not sendable.

        An item the task cannot send fails when called, without a call: it costs no limiter
        anything, in any of its dimensions.
        """
        try:
            return request_costs(self._read(item))
        except ValueError:
            return dict.fromkeys(_DIMENSIONS, 0.0)

    def bound_usd(self, item: Any) -> tuple[str | None, float | None]:
        """The item's model and the most it may cost: its prompt plus all of max_tokens."""
        request = self._read(item)
        return request.model, self.prices.bound_usd(request.model, *request.most_tokens)

    def spent_usd(self, result: Any) -> float | None:
        """What a stored answer cost, from its ``usage`` (None: no usage, or no price)."""
        from ..llm.pricing import usage_of  # noqa: PLC0415 - conveyor.llm imports conveyor.http

        usage = usage_of(result.get("body")) if isinstance(result, dict) else None
        return None if usage is None else self.prices.answer_cost_usd(usage)

    def check(self, item: Any) -> None:
        """The input check: the item must be a request line the task can send."""
        self._parse(item, 0)

    def _http(self) -> HttpTask:
        if self._task is None:
            transport = self._transport
            if transport is None:
                # `conveyor run`'s transport (a third of aiohttp's CPU per request), admissions
                # dated when the request goes out: a strict window counts them then.
                self._own = Http1Transport(connect_timeout_s=CONNECT_TIMEOUT_S, dated=True)
                transport = self._own
            self._task = HttpTask(
                transport,
                headers=self._headers,
                limiter=Limiter("http"),
                observe=False,
                tally=self.tally,
                usage="raise",
                redact=self._redact or None,
                hooks=self._hooks,
            )
        return self._task

    async def recall(self, item: Any, tenant: str) -> dict[str, Any] | None:
        """The cached answer to `item` sent by `tenant`, as its result; None: send it.

        The worker asks before the item takes a limiter slot; the call of that same value
        then sends at once. An item the task cannot send is left to its call (which fails).
        """
        try:
            request = self._read(item)
        except ValueError:
            return None
        hit = await self._recall(request, tenant)
        if hit is None:
            if len(self._missed) >= _READ_KEPT:
                del self._missed[next(iter(self._missed))]  # the oldest
            self._missed[id(item)] = item
        return hit

    async def _recall(self, request: Request, tenant: str) -> dict[str, Any] | None:
        """The cache stage's recall, with the hit counted; None without a cache or a hit."""
        if self._cache is None:
            return None
        hit = await self._cache.recall_request(request, tenant=tenant)
        if hit is None:
            return None
        self.tally.cache_hits += 1
        return hit.to_dict()

    async def __call__(self, item: Any, ctx: TaskContext) -> dict[str, Any]:
        """Send the item's request once; return the 2xx answer as a dict or raise."""
        request = self._read(item)
        if self._idempotency_header is not None:
            extra = ((self._idempotency_header, ctx.idempotency_key),)
            request = replace(request, headers=request.headers + extra)
        cache = self._cache
        if cache is not None and self._missed.pop(id(item), None) is not item:
            hit = await self._recall(request, ctx.tenant)
            if hit is not None:
                return hit
        try:
            response = await self._http()(request)
        except Exception as exc:
            if self._redact:
                # The error's message is stored: an API that quotes the key back must not
                # put it there (its type, and so the retry decision, stay as they are).
                exc.args = tuple(self._redact(a) if isinstance(a, str) else a for a in exc.args)
            raise
        # The result and the cached answer are one value: redacted once, stored twice.
        if cache is not None:
            return (await cache.keep_answer(request, response, tenant=ctx.tenant)).to_dict()
        return response.redacted(self._redact or None, secret_headers=self._secret).to_dict()

    async def aclose(self) -> None:
        """Close the connections, if this task opened them."""
        if self._own is not None:
            await self._own.close()
            self._own = None
            self._task = None
        if self._cache is not None:
            cache, self._cache = self._cache, None
            await cache.aclose()
