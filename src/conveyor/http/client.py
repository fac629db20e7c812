"""The HTTP task: send one `Request`, return its `Response` or raise why not.

Two layers, so that tests can replace the network:

- a *transport* does the I/O: ``await transport(method, url, headers, body)`` returns a
  `RawAnswer` (status, headers, bytes) or raises. `AiohttpTransport` is the real one; a test
  passes any async function of the same shape (like httpx's ``MockTransport``).
- `HttpTask` is what the engine calls once per attempt: it adds the headers (and, on a request
  to Anthropic, ``anthropic-version``: `conveyor.http.apis`), decodes the answer,
  raises `HTTPStatusError` for a non-2xx one (so the retry policy and the limiter read its
  status and ``Retry-After``), tells the limiter the rate-limit headers of a 2xx one when asked
  to, and counts what it sent for the progress display.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from .._json import MAX_DEPTH, BadJSON
from .._version import __version__
from ..engine.context import attempt_slot, current_slots
from ..errors import InvalidAnswer
from ..limits.costs import usage_costs
from .apis import ANTHROPIC_VERSION, is_anthropic
from .errors import AnswerTooLarge, HTTPStatusError, TransportError
from .response import Response, decode_body, kept_headers

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Mapping

    import aiohttp

    from ..limits.limiter import Limiter
    from ..llm.hooks import AnswerHooks
    from .request import Request
    from .tally import BatchTally

__all__ = ["AiohttpTransport", "HttpTask", "RawAnswer", "Transport"]

USER_AGENT = f"conveyor/{__version__}"

#: Sets of a line's own header names whose merge with the run's headers is remembered.
_KEPT_SETS = 64
#: The most bytes one answer's body may hold, as sent and as decoded (an API's answer to one
#: request is kilobytes; a batch's output file is read through another route). A larger one
#: fails its request with `AnswerTooLarge`, never held whole, in either transport.
MAX_BODY_BYTES = 64 * 1024 * 1024
#: What the aiohttp transport reads at a time.
_READ_BYTES = 1 << 16


@dataclass(frozen=True, slots=True)
class RawAnswer:
    """What a transport returns: the status, every header (lower-cased names) and the body."""

    status: int
    headers: dict[str, str]
    body: bytes


class Transport(Protocol):
    """Sends one HTTP request; returns the answer or raises `TransportError`."""

    async def __call__(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None
    ) -> RawAnswer:
        """Send the request and read the whole answer."""
        ...


class AiohttpTransport:
    """The real transport: one `aiohttp.ClientSession`, shared by every request of the run.

    Redirects are not followed: a redirect would carry the run's headers (credentials) to
    wherever the answer points; it is reported as the 3xx it is.
    """

    __slots__ = ("_errors", "_session")

    def __init__(self, session: aiohttp.ClientSession) -> None:
        import aiohttp  # noqa: PLC0415 - imported by the batch runner only

        self._session = session
        self._errors = (aiohttp.ClientError, OSError)

    async def __call__(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None
    ) -> RawAnswer:
        """Send the request and read the whole answer."""
        try:
            async with self._session.request(
                method, url, data=body, headers=headers, allow_redirects=False
            ) as answer:
                data = await _bounded_body(answer)
                names = {k.lower(): v for k, v in answer.headers.items()}
                return RawAnswer(answer.status, names, data)
        except self._errors as exc:
            # The reason aiohttp gives says what failed ("Cannot connect to host ..."); it
            # never contains request headers.
            raise TransportError(f"{type(exc).__name__}: {exc}" if str(exc) else repr(exc)) from exc


class HttpTask:
    """Makes one attempt at a `Request` (the function the engine calls per attempt).

    Args:
        transport: does the I/O.
        headers: sent with every request (a line's own headers win over them); a request to
            Anthropic also gets ``anthropic-version: 2023-06-01`` unless one of them, or the
            line's own, names another.
        limiter: the engine gives it every non-2xx answer through the error (429 / 503 with
            Retry-After pause it, and it reads their rate-limit headers).
        observe: also tell `limiter` the rate-limit headers of every 2xx answer. Worth it when
            the limits are unknown; when they are configured, see `Batch` for why not.
        tally: counts requests and tokens sent and 429s seen, for progress.
        usage: settle each estimated token cost with the answer's ``usage``, in every limiter
            of the attempt that limits tokens (the run's one; a job's connection's and those
            its options name): ``"raise"`` charges a total above the estimate, ``"both"``
            also refunds a total below it (input and output tokens, separate budgets counted
            as used, are settled either way), ``None`` leaves the estimate (no token limit).
        redact: keeps secrets out of the error messages made from answers.
        hooks: count, check and cache each 2xx answer (`conveyor.llm.AnswerHooks`); a check
            that fails raises `InvalidAnswer` after the usage is settled.
    """

    __slots__ = (
        "_anthropic_headers",
        "_anthropic_json_headers",
        "_headers",
        "_hooks",
        "_json_headers",
        "_kept",
        "_limiter",
        "_observe",
        "_redact",
        "_tally",
        "_transport",
        "_usage",
        "last_failure",
    )

    def __init__(
        self,
        transport: Transport,
        *,
        headers: Mapping[str, str],
        limiter: Limiter,
        observe: bool,
        tally: BatchTally,
        usage: Literal["raise", "both"] | None = None,
        redact: Callable[[str], str] | None = None,
        hooks: AnswerHooks | None = None,
    ) -> None:
        self._transport = transport
        self._hooks = hooks
        self._redact = redact
        self._headers = {"User-Agent": USER_AGENT, **headers}
        # The same with the body's type, built once: most requests send exactly these.
        self._json_headers = {**self._headers, "Content-Type": "application/json"}
        # And for Anthropic's routes, with the API version unless the run's headers name one.
        named = any(name.lower() == "anthropic-version" for name in self._headers)
        version = {} if named else {"anthropic-version": ANTHROPIC_VERSION}
        self._anthropic_headers = {**version, **self._headers}
        self._anthropic_json_headers = {**version, **self._json_headers}
        self._kept: dict[tuple[tuple[str, ...], bool, bool], dict[str, str]] = {}
        self._limiter = limiter
        self._observe = observe
        self._usage = usage
        self._tally = tally
        #: The latest failure seen (no secrets: statuses and transport reasons only).
        self.last_failure: str | None = None

    async def __call__(self, request: Request) -> Response:
        """Send `request` once; return the 2xx answer or raise."""
        headers = self._headers_of(request)
        tally = self._tally
        tally.sent += 1
        tally.tokens_sent += request.cost
        tally.input_sent += request.cost - request.output_tokens
        try:
            raw = await self._transport(request.method, request.url, headers, request.body)
        except TransportError as exc:
            self.last_failure = str(exc)
            raise
        too_deep = False
        try:
            body = decode_body(raw.body, raw.headers.get("content-type"))
        except BadJSON:  # JSON nested too deep to keep
            too_deep, body = True, raw.body.decode("utf-8", errors="replace")
        response = Response(raw.status, kept_headers(raw.headers.items()), body)
        if 200 <= raw.status < 300:
            # The engine holds this attempt's slot: the headers reach the limiter through it,
            # as every fact of a call does (dated by when the request left, the trace's mark).
            # Every header family it reads has "ratelimit" in its name: answers without one
            # skip the parser (a fifth of this task's own CPU time per request).
            if self._observe and any("ratelimit" in name for name in raw.headers):
                attempt_slot(self._limiter).observe(raw.headers)
            if too_deep:
                msg = (
                    f"the answer (HTTP {raw.status}) is JSON nested more than {MAX_DEPTH} deep,"
                    " the most Conveyor keeps: it was not kept"
                )
                raise InvalidAnswer("too_deep", msg)
            if not request.cost_given:
                self._settle_usage(request, response)
            if self._hooks is not None:
                await self._hooks.on_answer(request.method, request.url, request.body, response)
            return response
        if raw.status == 429:
            tally.rate_limited += 1
        error = HTTPStatusError(response, raw.headers, redact=self._redact)
        self.last_failure = str(error)
        raise error

    def _headers_of(self, request: Request) -> Mapping[str, str]:
        """The headers to send `request` with: the run's, and the line's own over them."""
        bare = request.body is None
        anthropic = is_anthropic(request.api)
        if anthropic:
            headers = self._anthropic_headers if bare else self._anthropic_json_headers
        else:
            headers = self._headers if bare else self._json_headers
        if not request.headers:
            return headers
        # A line's own header wins over the run's, whatever the case of its name: both
        # would be sent otherwise. The run's headers left by each set of a line's own
        # names are worked out once (a file's lines mostly name the same headers).
        names = tuple(name for name, _ in request.headers)
        key = (names, bare, anthropic)
        base = self._kept.get(key)
        if base is None:
            own = {name.lower() for name in names}
            base = {k: v for k, v in headers.items() if k.lower() not in own}
            if len(self._kept) < _KEPT_SETS:
                self._kept[key] = base
        mine = base.copy()
        mine.update(request.headers)
        return mine

    def _settle_usage(self, request: Request, response: Response) -> None:
        """Replace the estimated token cost by the answer's ``usage`` (see `usage`).

        `conveyor.limits.costs.usage_costs` reads it: OpenAI's and Anthropic's shapes, an
        Anthropic cache write counted as input and a cache read as neither.
        """
        body = response.body
        real = usage_costs(body.get("usage")) if isinstance(body, dict) else None
        if real is None:
            return
        tally = self._tally
        tally.input_sent += real["input_tokens"] - (request.cost - request.output_tokens)
        if self._usage is None:
            return
        if self._usage != "both":  # the total is charged up front: a use below it stands
            real["tokens"] = max(real["tokens"], request.cost)
        for slot in current_slots.get():
            if slot.limiter.limits_tokens:
                slot.settle(real)
        tally.tokens_sent += real["tokens"] - request.cost


def refuse_declared(length: str | int | None, limit: int) -> None:
    """`AnswerTooLarge` when an answer's declared Content-Length passes `limit` bytes."""
    if isinstance(length, str):
        length = int(length) if length.strip().isdecimal() else None
    if length is not None and length > limit:
        raise AnswerTooLarge(f"its Content-Length says {length:,} bytes", limit)


async def read_bounded(parts: AsyncIterator[bytes], limit: int) -> bytes:
    """The body `parts` make, or `AnswerTooLarge` once they pass `limit` bytes (never held)."""
    kept: list[bytes] = []
    size = 0
    async for part in parts:
        size += len(part)
        if size > limit:
            raise AnswerTooLarge("it went on past that", limit)
        kept.append(part)
    return b"".join(kept)


async def _bounded_body(answer: aiohttp.ClientResponse) -> bytes:
    """The answer's body, decoded, or `AnswerTooLarge` past `MAX_BODY_BYTES`."""
    refuse_declared(answer.content_length, MAX_BODY_BYTES)
    try:
        return await read_bounded(answer.content.iter_chunked(_READ_BYTES), MAX_BODY_BYTES)
    except AnswerTooLarge:
        answer.close()  # the rest is not read: the connection goes
        raise
