"""The public calls: `stream`, `map` and `run_sync`. They validate, then hand over to `Run`."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypedDict, TypeVar, Unpack, overload

from ..errors import ConfigError, Interrupted, SourceError
from ..limits.limiter import Limiter
from ..limits.protocol import Limit
from ..policy.retry import NO_RETRY, Retry, check_callable, check_retry
from .events import Event
from .report import Outcome, Report, Summary
from .runner import Run

if TYPE_CHECKING:
    from ..limits.costs import Cost
    from .settled import Settled

__all__ = ["Stream", "map", "run_sync", "stream"]

T = TypeVar("T")
R = TypeVar("R")

Fn = Callable[[T], Awaitable[R]] | Callable[[T], R]
Items = Iterable[T] | AsyncIterable[T]
Hook = Callable[[Event], object]


def _is_async_callable(fn: object) -> bool:
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004 - we want the method itself
    return call is not None and inspect.iscoroutinefunction(call)


def _check(fn: object, items: object, concurrency: object, retry: object, on_event: object) -> bool:
    """Validate the arguments; return whether `fn` is async. Raises `ConfigError`."""
    if inspect.iscoroutine(fn):
        fn.close()  # it will never run: close it so Python does not warn it was never awaited
        msg = (
            "fn is a coroutine object, not a function: pass the function itself,"
            " e.g. conveyor.map(release, ids), not conveyor.map(release(x), ids)"
        )
        raise ConfigError(msg)
    if not callable(fn):
        msg = f"fn={fn!r} is not callable: pass the function to call once per item"
        raise ConfigError(msg)
    if inspect.isasyncgenfunction(fn) or inspect.isgeneratorfunction(fn):
        kind = "an async generator" if inspect.isasyncgenfunction(fn) else "a generator"
        msg = (
            f"fn={getattr(fn, '__qualname__', fn)!r} is {kind} function: conveyor calls fn(item)"
            " and needs one result per item; use an `async def` function (or a plain function)"
            " that returns the result"
        )
        raise ConfigError(msg)
    if isinstance(items, str | bytes):
        msg = (
            f"items is a {type(items).__name__}: conveyor would run once per character;"
            " pass a list (or any iterable) of items"
        )
        raise ConfigError(msg)
    if not (hasattr(items, "__iter__") or hasattr(items, "__aiter__")):
        msg = f"items={items!r} is not iterable: pass a list, a generator or an async iterable"
        raise ConfigError(msg)
    if isinstance(concurrency, bool) or not isinstance(concurrency, int):
        msg = f"concurrency={concurrency!r}: concurrency must be an int >= 1"
        raise ConfigError(msg)
    if concurrency < 1:
        msg = (
            f"concurrency={concurrency}: at least one call must be allowed in flight;"
            " use concurrency=1 for one at a time"
        )
        raise ConfigError(msg)
    check_retry(retry)
    check_callable(on_event, "on_event", "takes one event")
    return _is_async_callable(fn)


def _need_loop(name: str) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        msg = (
            f"conveyor.{name}() needs a running event loop: call it from async code"
            " (inside asyncio.run(...)), or use conveyor.run_sync(...) from plain code"
        )
        raise ConfigError(msg) from None


class RunOptions(TypedDict, Generic[T], total=False):
    """The keyword options of `stream`, `map` and `run_sync` (see `stream` for each)."""

    concurrency: int
    retry: Retry | None
    fail_fast: bool
    on_event: Hook | None
    limiters: Sequence[Limiter]
    cost: Callable[[T], Cost] | None


@dataclass(frozen=True, slots=True)
class _Options(Generic[T]):
    concurrency: int
    retry: Retry | None
    fail_fast: bool
    on_event: Hook | None
    limiters: tuple[Limiter, ...]
    cost: Callable[[T], Cost] | None
    halt_on: Callable[[BaseException], bool] | None = None


def _new_run(
    fn: Fn[T, R], items: Items[T], o: _Options[T], *, need_loop: bool = False
) -> Run[T, R]:
    """Check every argument (`ConfigError` naming the wrong one), then build the run."""
    is_async = _check(fn, items, o.concurrency, o.retry, o.on_event)
    _check_limits(o.limiters, o.cost)
    if need_loop:
        _need_loop("stream")
    return Run(
        fn,
        items,
        is_async=is_async,
        concurrency=o.concurrency,
        retry=o.retry or NO_RETRY,
        fail_fast=o.fail_fast,
        on_event=o.on_event,
        limiters=o.limiters,
        cost=o.cost,
        halt_on=o.halt_on,
    )


def _check_limits(limiters: object, cost: object) -> None:
    if isinstance(limiters, Limiter):
        msg = "limiters= takes a list: limiters=[openai], not limiters=openai"
        raise ConfigError(msg)
    try:
        given = list(limiters)  # type: ignore[call-overload]
    except TypeError:
        msg = f"limiters={limiters!r}: pass a list of conveyor.Limiter"
        raise ConfigError(msg) from None
    for limiter in given:
        if not isinstance(limiter, Limit):
            msg = f"limiters=[..., {limiter!r}, ...]: each must be a conveyor.Limiter"
            raise ConfigError(msg)
        if limiter.limits_tokens and cost is None:
            config = getattr(limiter, "config", None)
            dims = ", ".join(config.costed) if config is not None else "tokens"
            example = (
                "cost=lambda req: estimate_tokens(req)"
                if dims == "tokens"
                else "cost=lambda req: {'input_tokens': ..., 'output_tokens': req['max_tokens']}"
            )
            msg = (
                f"limiter {limiter.name!r} limits {dims}: pass cost=..., a function that"
                f" estimates each item's cost (e.g. {example})"
            )
            raise ConfigError(msg)
    check_callable(cost, "cost", "takes an item and returns its estimated cost (tokens)")


class Stream(Generic[T, R]):
    """Outcomes as they settle, in completion order: ``async for outcome in stream``.

    Also an async context manager: leaving the ``async with`` block (or calling `aclose()`)
    cancels whatever is still running and waits until every in-flight item has settled.
    """

    __slots__ = ("_agen", "_anext", "_run")

    def __init__(self, run: Run[T, R]) -> None:
        self._run = run
        self._agen = run.outcomes()
        self._anext = self._agen.__anext__

    def __aiter__(self) -> AsyncIterator[Outcome[T, R]]:
        # `async for` drives the generator itself: no extra Python call per item.
        return self._agen

    def __anext__(self) -> Awaitable[Outcome[T, R]]:
        return self._anext()

    async def aclose(self) -> None:
        """Stop the run: cancel in-flight items (settled as cancelled) and wait for them.

        Safe to call from any task, also while another task is iterating the stream (a
        "cancel" button): that consumer's loop then ends.
        """
        if self._agen.ag_running:  # type: ignore[attr-defined]
            self._run.close_soon()
            await self._run.wait_closed()
        else:
            await self._agen.aclose()  # type: ignore[attr-defined]

    async def __aenter__(self) -> Stream[T, R]:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @property
    def summary(self) -> Summary:
        """The numbers so far (final once the stream is exhausted or closed)."""
        return self._run.summary()

    def drain(self) -> list[Outcome[T, R]]:
        """Take the outcomes settled but not yielded: once closed, those the loop did not get.

        Closing a stream ends its loop at once; the items that settled meanwhile (the ones in
        flight, as cancelled) are here, so that a consumer that records every outcome can.
        """
        return self._run.drain()


@overload
def stream(
    fn: Callable[[T], Awaitable[R]],
    items: Items[T],
    **options: Unpack[RunOptions[T]],
) -> Stream[T, R]: ...
@overload
def stream(
    fn: Callable[[T], R],
    items: Items[T],
    **options: Unpack[RunOptions[T]],
) -> Stream[T, R]: ...
def stream(
    fn: Fn[T, R],
    items: Items[T],
    *,
    concurrency: int = 10,
    retry: Retry | None = None,
    fail_fast: bool = False,
    on_event: Hook | None = None,
    limiters: Sequence[Limiter] = (),
    cost: Callable[[T], Cost] | None = None,
) -> Stream[T, R]:
    """Run ``fn(item)`` for each item, at most `concurrency` at once; yield outcomes as they settle.

    Items are pulled lazily from any iterable or async iterable, so an endless or huge one costs
    only what is in flight. Every item pulled settles exactly once: succeeded, failed (after the
    `retry` policy's attempts) or cancelled. Must be called with an event loop running.

    Args:
        fn: an ``async def`` function of one item, or a plain function, which then runs in a
            thread pool under the same cap.
        items: the items, any iterable or async iterable.
        concurrency: the most calls in flight at once (retries included).
        retry: how failed attempts are retried; default: one attempt, no timeout.
        fail_fast: stop at the first failure: cancel the rest and raise its error.
        on_event: called with every `Event` (started, retrying, finished, run finished).
        limiters: `Limiter`s every attempt goes through (retries too), in order.
        cost: a function item -> estimated tokens, for limiters that limit tokens.
    """
    options = _Options(concurrency, retry, fail_fast, on_event, tuple(limiters), cost)
    run: Run[T, R] = _new_run(fn, items, options, need_loop=True)
    return Stream(run)


def halting_stream(
    fn: Callable[[T], Awaitable[R]],
    items: Items[T | Settled[Any, R]],
    *,
    halt_on: Callable[[BaseException], bool],
    concurrency: int,
    retry: Retry | None,
    on_event: Hook | None,
    limiters: Sequence[Limiter],
    cost: Callable[[T], Cost] | None,
) -> Stream[Any, R]:
    """`stream`, where an error for which ``halt_on(error)`` is true halts the run.

    Its item settles as cancelled, not failed (it did not fail: nothing more could run), no
    new item is read, and the retries waiting are settled as cancelled; the calls in flight
    end as they do. For the runners that halt on an exhausted quota (`conveyor.http.Batch`,
    the jobs), not part of the public surface. `items` may hand over items already settled
    (`conveyor.engine.settled.Settled`): an outcome's item is then the one it carried.
    """
    options = _Options(
        concurrency,
        retry,
        fail_fast=False,
        on_event=on_event,
        limiters=tuple(limiters),
        cost=cost,
        halt_on=halt_on,
    )
    run: Run[Any, R] = _new_run(fn, items, options, need_loop=True)
    return Stream(run)


async def _collect(run: Run[T, R], partial: list[Report[T, R]]) -> Report[T, R]:
    outcomes: list[Outcome[T, R]] = []
    try:
        # A loop, not a comprehension: on an interrupt, what was collected must survive.
        async for outcome in Stream(run):
            outcomes.append(outcome)  # noqa: PERF401
    except BaseException as exc:
        outcomes.extend(run.drain())
        outcomes.sort(key=_index)
        report = Report(outcomes, run.summary())
        partial.append(report)
        if isinstance(exc, SourceError):
            exc.report = report
        raise
    outcomes.sort(key=_index)
    return Report(outcomes, run.summary())


def _index(outcome: Outcome[Any, Any]) -> int:
    return outcome.index


@overload
async def map(  # noqa: A001 # type: ignore[overload-overlap]
    fn: Callable[[T], Awaitable[R]],
    items: Items[T],
    **options: Unpack[RunOptions[T]],
) -> Report[T, R]: ...
@overload
async def map(  # noqa: A001
    fn: Callable[[T], R],
    items: Items[T],
    **options: Unpack[RunOptions[T]],
) -> Report[T, R]: ...
async def map(  # noqa: A001 - `conveyor.map` is the name users expect
    fn: Fn[T, R],
    items: Items[T],
    *,
    concurrency: int = 10,
    retry: Retry | None = None,
    fail_fast: bool = False,
    on_event: Hook | None = None,
    limiters: Sequence[Limiter] = (),
    cost: Callable[[T], Cost] | None = None,
) -> Report[T, R]:
    """Run ``fn(item)`` for every item and return a `Report`: outcomes in input order + summary.

    Same arguments as `stream`. Every outcome is kept, so memory grows with the number of items;
    for endless or huge inputs use `stream`. With ``fail_fast=True`` the first failure's error is
    raised after the rest are cancelled.
    """
    options = _Options(concurrency, retry, fail_fast, on_event, tuple(limiters), cost)
    return await _map(fn, items, [], options)


async def _map(
    fn: Fn[T, R],
    items: Items[T],
    partial: list[Report[T, R]],
    o: _Options[T],
) -> Report[T, R]:
    run: Run[T, R] = _new_run(fn, items, o)
    return await _collect(run, partial)


@overload
def run_sync(
    fn: Callable[[T], Awaitable[R]],
    items: Items[T],
    **options: Unpack[RunOptions[T]],
) -> Report[T, R]: ...
@overload
def run_sync(
    fn: Callable[[T], R],
    items: Items[T],
    **options: Unpack[RunOptions[T]],
) -> Report[T, R]: ...
def run_sync(
    fn: Fn[T, R],
    items: Items[T],
    *,
    concurrency: int = 10,
    retry: Retry | None = None,
    fail_fast: bool = False,
    on_event: Hook | None = None,
    limiters: Sequence[Limiter] = (),
    cost: Callable[[T], Cost] | None = None,
) -> Report[T, R]:
    """`map` for code without an event loop: runs one, returns the `Report`.

    Plain functions run in threads (at most `concurrency` at once); async ones on the loop.
    Ctrl-C cancels what is running and raises `conveyor.Interrupted`, whose ``report`` holds
    every item settled so far, the interrupted ones as cancelled.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        msg = (
            "run_sync() was called with an event loop running; in async code use"
            " `await conveyor.map(...)` instead"
        )
        raise ConfigError(msg)
    _check(fn, items, concurrency, retry, on_event)
    _check_limits(limiters, cost)
    options = _Options(concurrency, retry, fail_fast, on_event, tuple(limiters), cost)
    partial: list[Report[T, R]] = []
    try:
        return asyncio.run(_map(fn, items, partial, options))
    except KeyboardInterrupt as exc:
        if partial and not isinstance(exc, Interrupted):
            raise Interrupted(partial[0]) from exc
        raise
