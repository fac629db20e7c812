"""Streams through the limiters: a stream holds its slots until it ends, then settles them.

Anthropic's streams report usage as they go: ``message_start`` carries the input tokens (the
cache's too), each ``message_delta`` the output tokens so far, cumulative, so the last one is
the answer's total. A stream read to its end therefore settles its slots exactly, as a plain
answer does, and counts as in flight (its concurrency held) until then. Two ways in:

- ``messages.create(..., stream=True)`` returns the SDK's event stream, wrapped (`Metered`,
  `SyncMetered`): the slots are released when it is read to its end, closed, or fails;
- ``messages.stream(...)`` returns the SDK's helper, wrapped (`Managed`, `SyncManaged`): the
  slots are held for the ``async with`` / ``with`` block and settled from the message the
  helper accumulated.

Only the opening is retried (a 429, a 529, a 5xx before the first event): an error inside the
stream (Anthropic sends ``overloaded_error`` as an event after HTTP 200) reaches the reader
unretried, its events having been handed over, and the limiters learn from it (a push-back).
A stream left early settles what its events reported, which may be less than the API produced
before it saw the connection close; one neither read to its end nor closed keeps its slots,
so use it in ``async with`` / ``with``, as the SDK itself advises.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar

from .._closing import Closing
from .slots import real_cost, settle_and_release

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from ..limits.slot import Slot
    from .slots import OnLoop

    #: Folds one stream event's usage into the usage so far.
    Fold = Callable[[dict[str, int], Any], None]

__all__ = ["Managed", "Meter", "Metered", "SyncManaged", "SyncMetered", "snapshot_usage"]

#: What a `Managed` (an awaitable of it) or a `SyncManaged` opens with.
OpenedT = TypeVar("OpenedT")


class Meter:
    """A stream's slots, held until it ends, and the usage its events reported so far."""

    __slots__ = ("_done", "_fold", "_on_loop", "_slots", "usage")

    def __init__(self, slots: Sequence[Slot], *, fold: Fold | None, on_loop: OnLoop) -> None:
        self._slots = slots
        self._fold = fold
        self._on_loop = on_loop
        self._done = False
        #: The usage reported so far, in the API's names (``input_tokens``, ...).
        self.usage: dict[str, int] = {}

    def see(self, event: Any) -> None:
        """Note the usage `event` reports, if any."""
        if self._fold is not None:
            self._fold(self.usage, event)

    def stopped(self, exc: BaseException) -> None:
        """The stream raised `exc`: it was read to its end (``StopIteration``), or failed."""
        self.end(None if isinstance(exc, StopIteration | StopAsyncIteration) else exc)

    def end(self, error: BaseException | None = None, *, usage: Any = None) -> None:
        """Settle the slots with `usage` (else what the events said) and release them; once."""
        if self._done:
            return
        self._done = True
        used = usage if usage is not None else (self.usage or None)
        real = real_cost(used, {}, refund=True)
        self._on_loop(settle_and_release, self._slots, error=error, real=real)


class _Wrapped:
    """A stream and its `Meter`; every attribute but the wrapper's own is the stream's."""

    def __init__(self, stream: Any, meter: Meter) -> None:
        self._stream = stream
        self._meter = meter

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class Metered(_Wrapped, Closing):
    """An async event stream that ends its `Meter` when it is read out, closed, or fails."""

    def __aiter__(self) -> Metered:
        return self

    async def __anext__(self) -> Any:
        try:
            event = await self._stream.__anext__()
        except BaseException as exc:
            self._meter.stopped(exc)
            raise
        self._meter.see(event)
        return event

    async def close(self) -> None:
        """Close the response (the connection goes back to the pool) and release the slots."""
        try:
            await self._stream.close()
        finally:
            self._meter.end()


class SyncMetered(_Wrapped):
    """A sync event stream that ends its `Meter` when it is read out, closed, or fails."""

    def __iter__(self) -> SyncMetered:
        return self

    def __next__(self) -> Any:
        try:
            event = next(self._stream)
        except BaseException as exc:
            self._meter.stopped(exc)
            raise
        self._meter.see(event)
        return event

    def close(self) -> None:
        """Close the response (the connection goes back to the pool) and release the slots."""
        try:
            self._stream.close()
        finally:
            self._meter.end()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def snapshot_usage(stream: Any) -> Any:
    """The usage of the message a helper stream accumulated; None before its first event."""
    # The SDK asserts that a message was started; before that there is no usage to settle.
    with contextlib.suppress(AssertionError):
        return getattr(stream.current_message_snapshot, "usage", None)
    return None


#: Opens a helper stream through the limiters: its meter, the SDK's manager, its stream.
Opened = tuple[Meter, Any, Any]


class _Held(Generic[OpenedT]):
    """A helper stream opened by `open_stream` on entering the block, settled on leaving it."""

    def __init__(self, open_stream: Callable[[], OpenedT]) -> None:
        self._open = open_stream
        self._opened: Opened | None = None

    def _settle(self, exc: object) -> None:
        """End the meter with the usage the helper accumulated, and the block's error if any."""
        if self._opened is not None:
            meter, _, stream = self._opened
            error = exc if isinstance(exc, BaseException) else None
            meter.end(error, usage=snapshot_usage(stream))


class Managed(_Held[Awaitable[Opened]]):
    """``async with messages.stream(...) as stream``: the block holds the slots."""

    async def __aenter__(self) -> Any:
        self._opened = await self._open()
        return self._opened[2]

    async def __aexit__(self, *exc_info: object) -> None:
        if self._opened is None:
            return
        try:
            await self._opened[1].__aexit__(*exc_info)
        finally:
            self._settle(exc_info[1])


class SyncManaged(_Held[Opened]):
    """``with messages.stream(...) as stream``: the block holds the slots."""

    def __enter__(self) -> Any:
        self._opened = self._open()
        return self._opened[2]

    def __exit__(self, *exc_info: object) -> None:
        if self._opened is None:
            return
        try:
            self._opened[1].__exit__(*exc_info)
        finally:
            self._settle(exc_info[1])
