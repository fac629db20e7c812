"""The engine behind `limit_openai` and `limit_anthropic`: an SDK's calls through shared limiters.

What differs between the SDKs is a `Provider` (`conveyor.llm.provider`); the rest is here,
written once for both. Every call:

1. works out its cost per dimension before it is sent (the provider's estimate);
2. takes a slot of each limiter, in order;
3. is sent once by the SDK, whose own retries are off (they would bypass the limiters),
   through its raw response: the answer and its headers from one parse;
4. settles each slot with the answer's real ``usage`` and shows the limiters the answer's
   rate-limit headers; a failed call shows them its error: a 429 (or 503, 529) with a
   retry-after pauses every caller, an exhausted quota or spend cap halts the limiter;
5. runs the answer check, if any, outside the slots;
6. is retried by `conveyor.Retry`'s policy, each retry taking its slots again, so retries are
   paced like first attempts; an exhausted quota or spend cap is never retried: it raises
   `QuotaExhausted`, and so does every later call through that limiter, at once.

A stream holds its slots until it ends (`conveyor.llm.streams`). A sync client's calls wait in
the calling thread while the limiters admit them on the bridge's loop (`conveyor.llm.bridge`).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from .. import _clock
from ..engine.context import current_slots
from ..limits.quota import quota_halt
from ..policy.retry import Retry, decide
from .bridge import Bridge
from .slots import (
    admit,
    bridged,
    direct,
    give_back,
    opened,
    rate_limit_headers,
    real_cost,
    settle_and_release,
    usage_in,
)
from .streams import Managed, Meter, Metered, SyncManaged, SyncMetered

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from ..limits.limiter import Limiter
    from ..limits.slot import Slot
    from .provider import Provider
    from .slots import OnLoop
    from .streams import Opened

    #: What an attempt does with its answer once its headers came.
    Land = Callable[[list[Slot], Any, Any], Any]

__all__ = ["Calls", "Settings", "SyncCalls", "Tries"]

T = TypeVar("T")


class Tries:
    """One call's attempts under a retry policy: the wait before the next one, or the error."""

    def __init__(self, policy: Retry, limiters: Sequence[Limiter], started_s: float) -> None:
        self._policy = policy
        self._limiters = limiters
        self._started_s = started_s
        self.attempt = 0

    def wait_after(self, exc: Exception, now_s: float) -> float:
        """Seconds before the next attempt after `exc`; raises if there is none to make.

        An exhausted quota or spend cap (`conveyor.limits.quota.quota_halt`) is never
        retried: it raises `QuotaExhausted`, the one the limiter halted with. Otherwise the
        retry policy decides, and an error it does not retry is raised again.
        """
        self.attempt += 1
        policy = self._policy
        halted = quota_halt(exc, self._limiters, classifier=policy.classifier)
        if halted is exc:
            raise exc
        if halted is not None:
            raise halted from exc
        decision = decide(
            policy,
            attempt=self.attempt,
            exc=exc,
            elapsed_s=now_s - self._started_s,
            now_wall_s=_clock.wall(),
            u=policy.rng.random(),
        )
        if not decision.retry:
            raise exc
        return decision.delay_s


@dataclass(frozen=True, slots=True)
class Settings:
    """What a limited resource's calls go by (see `conveyor.llm.provider.limit_client`)."""

    provider: Provider
    limiters: tuple[Limiter, ...]
    retry: Retry
    validate: Callable[[Any], object] | None
    refund: bool


class _Shared:
    """What an async and a sync SDK resource share: the settings, and what an answer does."""

    def __init__(self, quiet: Any, settings: Settings, on_loop: OnLoop) -> None:
        self._quiet = quiet  # the resource of the client copy whose own retries are off
        self._settings = settings
        self._on_loop = on_loop

    def _land(
        self,
        slots: list[Slot],
        headers: Any,
        answer: Any,
        cost: dict[str, float],
        *,
        stream: bool,
        metered: Callable[[Any, Meter], Any],
    ) -> Any:
        """Settle and release the slots with `answer`, check it; or hand them to its stream."""
        fold = self._settings.provider.fold
        if stream and fold is not None:
            self._on_loop(opened, slots, rate_limit_headers(headers))
            return metered(answer, Meter(slots, fold=fold, on_loop=self._on_loop))
        real = real_cost(usage_in(answer), cost, refund=self._settings.refund)
        self._on_loop(settle_and_release, slots, headers=rate_limit_headers(headers), real=real)
        if self._settings.validate is not None and not stream:
            self._settings.validate(answer)
        return answer

    def _land_managed(self, slots: list[Slot], headers: Any, pair: tuple[Any, Any]) -> Opened:
        """A helper stream opened: its slots are held by a `Meter` until its block ends."""
        self._on_loop(opened, slots, rate_limit_headers(headers))
        manager, stream = pair
        return Meter(slots, fold=None, on_loop=self._on_loop), manager, stream


class Calls(_Shared):
    """An async client's resource: `create` (and the ``stream`` helper) through the limiters."""

    def __init__(self, quiet: Any, settings: Settings) -> None:
        super().__init__(quiet, settings, direct)

    async def create(self, **kwargs: Any) -> Any:
        """Send the call through the limiters, retried by the policy; see the module doc."""
        cost = self._settings.provider.cost(kwargs)
        stream = kwargs.get("stream") is True

        async def send() -> tuple[Any, Any]:
            raw = await self._quiet.with_raw_response.create(**kwargs)
            answer = raw.parse()  # anthropic's async parse is a coroutine, openai's is not
            return raw.headers, (await answer) if inspect.isawaitable(answer) else answer

        def land(slots: list[Slot], headers: Any, answer: Any) -> Any:
            return self._land(slots, headers, answer, cost, stream=stream, metered=Metered)

        return await self._retrying(cost, send, land)

    def stream(self, **kwargs: Any) -> Managed:
        """The SDK's ``stream(...)`` helper, opened through the limiters by ``async with``."""
        cost = self._settings.provider.cost(kwargs)

        async def send() -> tuple[Any, Any]:
            manager = self._quiet.stream(**kwargs)
            stream = await manager.__aenter__()
            return stream.response.headers, (manager, stream)

        return Managed(lambda: self._retrying(cost, send, self._land_managed))

    async def _retrying(
        self, cost: dict[str, float], send: Callable[[], Awaitable[tuple[Any, Any]]], land: Land
    ) -> Any:
        """Admit, `send`, `land` the answer; after a failure, again as the policy says."""
        tries = Tries(self._settings.retry, self._settings.limiters, _clock.now())
        while True:
            try:
                slots = await admit(self._settings.limiters, cost)
                outer = current_slots.get()
                token = current_slots.set((*outer, *slots))  # dated as the request leaves
                try:
                    headers, answer = await send()
                except BaseException as exc:
                    settle_and_release(slots, error=exc)
                    raise
                finally:
                    current_slots.reset(token)
                return land(slots, headers, answer)
            except Exception as exc:
                await asyncio.sleep(tries.wait_after(exc, _clock.now()))


class SyncCalls(_Shared):
    """A sync client's resource: the calling thread waits, the bridge's loop admits."""

    def __init__(self, quiet: Any, settings: Settings) -> None:
        super().__init__(quiet, settings, bridged)

    def create(self, **kwargs: Any) -> Any:
        """Send the call through the limiters, retried by the policy; see the module doc."""
        cost = self._settings.provider.cost(kwargs)
        stream = kwargs.get("stream") is True

        def send() -> tuple[Any, Any]:
            raw = self._quiet.with_raw_response.create(**kwargs)
            return raw.headers, raw.parse()

        def land(slots: list[Slot], headers: Any, answer: Any) -> Any:
            return self._land(slots, headers, answer, cost, stream=stream, metered=SyncMetered)

        return self._retrying(cost, send, land)

    def stream(self, **kwargs: Any) -> SyncManaged:
        """The SDK's ``stream(...)`` helper, opened through the limiters by ``with``."""
        cost = self._settings.provider.cost(kwargs)

        def send() -> tuple[Any, Any]:
            manager = self._quiet.stream(**kwargs)
            stream = manager.__enter__()
            return stream.response.headers, (manager, stream)

        return SyncManaged(lambda: self._retrying(cost, send, self._land_managed))

    def _retrying(
        self, cost: dict[str, float], send: Callable[[], tuple[Any, Any]], land: Land
    ) -> Any:
        """Admit (on the bridge), `send`, `land` the answer; after a failure, again."""
        tries = Tries(self._settings.retry, self._settings.limiters, time.monotonic())
        while True:
            try:
                slots = Bridge.run(admit(self._settings.limiters, cost), undo=give_back)
                try:
                    headers, answer = send()
                except BaseException as exc:
                    bridged(settle_and_release, slots, error=exc)
                    raise
                return land(slots, headers, answer)
            except Exception as exc:
                time.sleep(tries.wait_after(exc, time.monotonic()))
