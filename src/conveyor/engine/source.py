"""Where items come from: any iterable or async iterable, pulled one item at a time.

An async iterable cannot be asked for its next item twice at once, so one worker pulls while
the others wait, but only until something else needs them: a worker waiting for a pull gives
up when a retry falls due, so a source that is slow (or that waits on the results of this very
run, like a crawler's queue) never keeps a due retry from running. That holds for the worker
pulling too: when a retry is waiting, the pull runs as a task of its own that the worker stops
waiting for at the retry's time, and whoever pulls next takes its item. At concurrency 1 this
is what keeps the run going: the one worker must run the retry the source may be waiting on.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

__all__ = ["BUSY", "END", "Source"]

#: No item: the source is exhausted (or failed; see `Source.error`).
END: Any = object()
#: No item yet: another worker is pulling; try again (a retry may have fallen due meanwhile).
BUSY: Any = object()


class Source:
    """Pulls items lazily; remembers whether it is exhausted and why it stopped."""

    __slots__ = ("_async", "_detached", "_pulling", "_sync", "error", "exhausted", "read")

    def __init__(self, items: Any) -> None:
        self._sync: Iterator[Any] | None = None
        self._async: AsyncIterator[Any] | None = None
        if hasattr(items, "__aiter__"):
            self._async = aiter(items)
        else:
            self._sync = iter(items)
        self._pulling: asyncio.Future[None] | None = None
        self._detached: asyncio.Task[Any] | None = None  # a pull its worker stopped waiting for
        self.exhausted = False
        self.error: BaseException | None = None
        self.read = 0

    @property
    def sync_iterator(self) -> Iterator[Any] | None:
        """The iterator when the source is synchronous (the engine's fast path reads it)."""
        return self._sync

    def failed(self, exc: BaseException) -> None:
        """Record that reading raised: no more items will be read."""
        self.exhausted = True
        self.error = exc

    async def pull(self, *, until: float | None) -> Any:
        """Return the next item of an async source, `END`, or `BUSY` if another pull runs.

        A caller that finds a pull under way waits for it to end, or until loop time `until`
        (when a retry falls due), whichever is first. A caller that starts a pull with `until`
        set starts it as a task (a detached pull) and waits for it the same way.
        """
        assert self._async is not None
        idle = self._detached is None and self._pulling is None and not self.exhausted
        if idle and until is not None:  # a retry is waiting: pull in a task, not in line
            self._detached = asyncio.get_running_loop().create_task(_next(self._async))
        if self._detached is not None:
            return await self._from_detached(until)
        if self._pulling is not None:
            await _wait_for(self._pulling, until)
            return BUSY
        if self.exhausted:
            return END
        return await self._inline()

    async def _from_detached(self, until: float | None) -> Any:
        detached = self._detached
        assert detached is not None
        if not detached.done():
            await _wait_for(detached, until)
        if not detached.done() or self._detached is not detached:
            return BUSY  # still pulling (a retry is due), or another caller took the item
        self._detached = None
        return self._take(detached)

    async def _inline(self) -> Any:
        assert self._async is not None
        self._pulling = asyncio.get_running_loop().create_future()
        try:
            item = await anext(self._async)
        except StopAsyncIteration:
            self.exhausted = True
            return END
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # the source's own error, CancelledError included
            self.failed(exc)
            return END
        else:
            self.read += 1
            return item
        finally:
            done, self._pulling = self._pulling, None
            if done is not None and not done.done():
                done.set_result(None)

    def _take(self, pulled: asyncio.Task[Any]) -> Any:
        """The item a detached pull got, or `END` (the source ended, or failed)."""
        if pulled.cancelled():  # the source raised CancelledError (`_next` keeps the rest)
            self.failed(asyncio.CancelledError())
            return END
        item = pulled.result()
        if item is END:
            self.exhausted = True
            return END
        if isinstance(item, _Raised):
            self.failed(item.error)
            return END
        self.read += 1
        return item

    async def leftover(self) -> Any:
        """Stop a detached pull; return the item it got that no worker took, or `END`."""
        detached = self._detached
        if detached is None:
            return END
        if not detached.done():
            detached.cancel()  # the generator gets CancelledError where it waits, then ends
            await asyncio.wait([detached])
        self._detached = None
        if detached.cancelled():
            return END  # nothing pulled
        item = detached.result()
        if item is END or isinstance(item, _Raised):
            return END
        self.read += 1
        return item

    async def aclose(self) -> None:
        """Close an async generator source (sync iterators are left to their owner)."""
        await self.leftover()
        if self._async is not None:
            aclose = getattr(self._async, "aclose", None)
            if aclose is not None:
                await aclose()


class _Raised:
    """What a detached pull's source raised, kept as a value.

    A task would re-raise KeyboardInterrupt and SystemExit out of the event loop, not to the
    run; the inline pull reports them as the source's error, and so does this.
    """

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


async def _next(items: AsyncIterator[Any]) -> Any:
    """The next item, `END`, or `_Raised` (StopAsyncIteration would not leave a task as itself)."""
    try:
        return await anext(items)
    except StopAsyncIteration:
        return END
    except asyncio.CancelledError:
        raise
    except BaseException as exc:  # the source's own error, as the inline pull reports it
        return _Raised(exc)


async def _wait_for(pulling: asyncio.Future[Any], until: float | None) -> None:
    """Wait for `pulling` to end, or until loop time `until`; never cancels it."""
    if until is None:
        await asyncio.wait([pulling])  # not shield: a pull the source cancelled is no cancel here
    else:
        timeout = max(until - asyncio.get_running_loop().time(), 0.0)
        await asyncio.wait([pulling], timeout=timeout)
