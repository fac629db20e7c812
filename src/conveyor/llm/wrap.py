"""`limit_openai`: an ``openai`` client whose chat calls go through shared limiters.

``openai.AsyncOpenAI`` and the sync ``openai.OpenAI`` both (Azure's too).

User code keeps calling ``client.chat.completions.create(...)``; every call then:

1. estimates its token cost from the request (`conveyor.http.estimate_tokens`: the messages'
   characters / 4 plus ``max_tokens``, with no tokenizer to download);
2. takes a slot of each limiter, in order (a token limiter is charged the estimate);
3. is sent once by the SDK, whose own retries are turned off (``max_retries=0``): they would
   bypass the limiters;
4. settles each slot with the answer's real ``usage`` and shows the limiters the answer's
   rate-limit headers; a 429 or 503 with ``Retry-After`` pauses every caller of the limiter,
   and a 429 ``insufficient_quota`` halts it (`QuotaExhausted`, at once, for every caller);
5. runs the answer check, if any (`AnswerCheck`), outside the slot;
6. is retried by `conveyor.Retry`'s policy (`is_transient`, which honours ``x-should-retry``),
   each retry taking its slots again, so retries are paced like first attempts.

Everything else on the client is the client's own, unchanged.

A sync client's calls wait in the calling thread while the limiters, which are asyncio's,
admit them on one private event loop, run by a daemon thread for the process (`_Bridge`):
every admission, settlement and release of a sync call happens there, so threads calling
one wrapped client (or several, sharing limiters) are paced together. The limiters a sync
client uses must therefore not be used at the same time by async code on another loop (a
limiter belongs to the loop it admits on); share them among sync clients, or use
``AsyncOpenAI`` everywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import threading
import time
from typing import TYPE_CHECKING, Any, TypeVar, cast

from .. import _clock
from ..engine.context import current_slots
from ..errors import ConfigError, QuotaExhausted
from ..http.request import estimate_tokens
from ..http.sendtime import date_httpx_sends
from ..limits.limiter import Limiter
from ..policy.llm_errors import api_error_fields, quota_exhausted
from ..policy.retry import Retry, decide
from .pricing import usage_of

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Sequence

    from ..limits.slot import Slot

__all__ = ["limit_openai"]

C = TypeVar("C")


def limit_openai(
    client: C,
    *,
    limiters: Sequence[Limiter],
    retry: Retry | None = None,
    validate: Callable[[Any], object] | None = None,
    refund_unused_tokens: bool = False,
) -> C:
    """Return `client` (``openai.AsyncOpenAI`` or ``OpenAI``) with its chats through `limiters`.

    Args:
        client: the client to wrap; it is not changed (a copy with ``max_retries=0`` is used).
        limiters: the shared `Limiter`s every call goes through, in order.
        retry: how failed calls are retried (default: ``Retry(attempts=5)``, transient errors).
        validate: called with each answer; raising `InvalidAnswer` makes the call fail and retry.
        refund_unused_tokens: settle a token limiter with the ``usage`` also when it is below
            the estimate (OpenAI charges ``max_tokens`` up front, so off by default).

    >>> llm = conveyor.Limiter("openai", requests_per_minute=500, tokens_per_minute=200_000)
    >>> client = limit_openai(openai.AsyncOpenAI(), limiters=[llm])  # doctest: +SKIP
    """
    if isinstance(limiters, Limiter) or not all(isinstance(x, Limiter) for x in limiters):
        msg = "limit_openai(limiters=...): pass a list of conveyor.Limiter, e.g. limiters=[llm]"
        raise ConfigError(msg)
    with_options = getattr(client, "with_options", None)
    chat = getattr(client, "chat", None)
    completions = getattr(chat, "completions", None)
    create = getattr(completions, "create", None)
    if with_options is None or not callable(create):
        msg = (
            f"limit_openai({type(client).__name__}): pass an openai.AsyncOpenAI or"
            " openai.OpenAI client (or an Azure one)"
        )
        raise ConfigError(msg)
    # The SDK wraps `create` in a plain decorator: look at the function beneath it.
    is_async = inspect.iscoroutinefunction(inspect.unwrap(create))
    quiet = with_options(max_retries=0)
    if is_async:
        date_httpx_sends(getattr(quiet, "_client", None))
    kind = _LimitedCompletions if is_async else _SyncLimitedCompletions
    limited = kind(
        quiet.chat.completions,
        limiters=tuple(limiters),
        retry=retry or Retry(attempts=5),
        validate=validate,
        refund=refund_unused_tokens,
    )
    return cast("C", _Proxy(client, chat=_Proxy(chat, completions=limited)))


class _Proxy:
    """An object whose named attributes are replaced, everything else its target's."""

    def __init__(self, target: object, **replaced: object) -> None:
        self._target = target
        self.__dict__.update(replaced)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)


class _LimitedCompletions:
    """``chat.completions`` whose `create` goes through the limiters (see the module doc)."""

    def __init__(
        self,
        completions: Any,
        *,
        limiters: tuple[Limiter, ...],
        retry: Retry,
        validate: Callable[[Any], object] | None,
        refund: bool,
    ) -> None:
        self._completions = completions
        self._limiters = limiters
        self._retry = retry
        self._validate = validate
        self._refund = refund

    def __getattr__(self, name: str) -> Any:
        return getattr(self._completions, name)

    async def create(self, **kwargs: Any) -> Any:
        """Create a chat completion through the limiters; retried by the policy."""
        cost = call_cost(kwargs)
        started = _clock.now()
        attempt = 0
        while True:
            attempt += 1
            try:
                answer = await self._attempt(kwargs, cost)
                if self._validate is not None:
                    self._validate(answer)
            except Exception as exc:
                await asyncio.sleep(self._retry_delay(exc, attempt, _clock.now() - started))
            else:
                return answer

    def _retry_delay(self, exc: Exception, attempt: int, elapsed_s: float) -> float:
        """Seconds before the next attempt after `exc`; raises if there is none to make.

        An exhausted quota is never retried: it raises `QuotaExhausted`. Otherwise the retry
        policy decides, and an error it does not retry is raised again.
        """
        if quota_exhausted(exc):
            name = self._limiters[0].name if self._limiters else "openai"
            raise QuotaExhausted(name, api_error_fields(exc)[2] or "") from exc
        policy = self._retry
        decision = decide(
            policy,
            attempt=attempt,
            exc=exc,
            elapsed_s=elapsed_s,
            now_wall_s=_clock.wall(),
            u=policy.rng.random(),
        )
        if not decision.retry:
            raise exc
        return decision.delay_s

    async def _attempt(self, kwargs: dict[str, Any], cost: dict[str, float]) -> Any:
        async with contextlib.AsyncExitStack() as stack:
            slots = [
                await stack.enter_async_context(limiter.acquire(cost)) for limiter in self._limiters
            ]
            outer = current_slots.get()
            token = current_slots.set((*outer, *slots))  # dated as the request leaves
            try:
                raw = await self._completions.with_raw_response.create(**kwargs)
            finally:
                current_slots.reset(token)
            answer = raw.parse()
            _learn(slots, raw.headers, answer, cost, refund=self._refund)
            return answer


def call_cost(kwargs: dict[str, Any]) -> dict[str, float]:
    """A chat call's cost per dimension, before it is sent (`conveyor.limits.costs`).

    ``tokens`` is what OpenAI's limiter charges up front: the prompt's estimate plus
    ``max_tokens``; ``input_tokens`` the prompt's; ``output_tokens`` the bound, when set.
    """
    total = float(estimate_tokens(kwargs, None))
    bound = kwargs.get("max_completion_tokens", kwargs.get("max_tokens"))
    cost = {"tokens": total}
    if isinstance(bound, int) and not isinstance(bound, bool) and 0 <= bound <= total:
        cost["input_tokens"] = total - bound
        cost["output_tokens"] = float(bound)
    else:
        cost["input_tokens"] = total
    return cost


def _learn(
    slots: list[Slot], headers: Any, answer: Any, cost: dict[str, float], *, refund: bool
) -> None:
    """Show the slots the answer's rate-limit headers; settle them with its ``usage``.

    OpenAI charges a call's ``max_tokens`` against its token limit whatever the answer
    used, so ``tokens`` is settled below the estimate only with `refund`; input and output
    tokens (separate budgets, counted as used) are always settled from the usage.
    """
    observe = any("ratelimit" in str(name).lower() for name in headers)
    usage = usage_of(answer)
    real: dict[str, float] | None = None
    if usage is not None:
        inp, out = float(usage.tokens_in), float(usage.tokens_out)
        real = {"input_tokens": inp, "output_tokens": out, "tokens": inp + out}
        if not refund:
            real["tokens"] = max(real["tokens"], cost["tokens"])
    for slot in slots:
        if observe:
            slot.observe(headers)
        if real is not None and slot.limiter.limits_tokens:
            slot.settle(real)


T = TypeVar("T")


class _Bridge:
    """One private event loop in a daemon thread, where sync calls use the limiters."""

    _lock = threading.Lock()
    _loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def loop(cls) -> asyncio.AbstractEventLoop:
        with cls._lock:
            if cls._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="conveyor-limiter-bridge", daemon=True
                )
                thread.start()
                cls._loop = loop
            return cls._loop

    @classmethod
    def run(
        cls,
        coro: Coroutine[Any, Any, T],
        undo: Callable[[T], Coroutine[Any, Any, None]] | None = None,
    ) -> T:
        """Run `coro` on the bridge's loop; wait for it in this thread.

        Interrupted while waiting (``KeyboardInterrupt``), the coroutine is cancelled; if it
        had just finished, `undo` is run on its result (slots taken are given back).
        """
        loop = cls.loop()
        future = asyncio.run_coroutine_threadsafe(coro, loop)
        try:
            return future.result()
        except BaseException:
            if not future.cancel() and undo is not None and not future.exception():
                asyncio.run_coroutine_threadsafe(undo(future.result()), loop)
            raise


async def _admit(limiters: tuple[Limiter, ...], cost: dict[str, float]) -> list[Slot]:
    """Take a slot of each limiter, in order, as ``async with limiter.acquire`` does."""
    slots: list[Slot] = []
    try:
        for limiter in limiters:
            slot = await limiter.admit(cost)
            slot.mark_sent(_clock.now())
            slots.append(slot)
    except BaseException as exc:
        await _release(slots, exc)
        raise
    return slots


async def _release(slots: list[Slot], error: BaseException | None) -> None:
    now = _clock.now()
    for slot in reversed(slots):
        slot.release(error, now - slot.admitted_at)


async def _learn_and_release(
    slots: list[Slot], headers: Any, answer: Any, cost: dict[str, float], *, refund: bool
) -> None:
    try:
        _learn(slots, headers, answer, cost, refund=refund)
    finally:
        await _release(slots, None)


class _SyncLimitedCompletions(_LimitedCompletions):
    """A sync client's ``chat.completions``: the calling thread waits, the bridge admits."""

    def create(self, **kwargs: Any) -> Any:
        """Create a chat completion through the limiters; retried by the policy."""
        cost = call_cost(kwargs)
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                answer = self._attempt_sync(kwargs, cost)
                if self._validate is not None:
                    self._validate(answer)
            except Exception as exc:
                time.sleep(self._retry_delay(exc, attempt, time.monotonic() - started))
            else:
                return answer

    def _attempt_sync(self, kwargs: dict[str, Any], cost: dict[str, float]) -> Any:
        slots = _Bridge.run(_admit(self._limiters, cost), lambda taken: _release(taken, None))
        try:
            raw = self._completions.with_raw_response.create(**kwargs)
            answer = raw.parse()
        except BaseException as exc:
            _Bridge.run(_release(slots, exc))
            raise
        _Bridge.run(_learn_and_release(slots, raw.headers, answer, cost, refund=self._refund))
        return answer
