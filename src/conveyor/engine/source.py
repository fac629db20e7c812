"""Where items come from: any iterable or async iterable, pulled one item at a time.

An async iterable cannot be asked for its next item twice at once, so one worker pulls while
the others wait, but only until something else needs them: a worker waiting behind a pull
gives up when a retry falls due, so a source that is slow (or that waits on the results of
this very run, like a crawler's queue) never keeps a due retry from running.
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

    __slots__ = ("_async", "_pulling", "_sync", "error", "exhausted", "read")

    def __init__(self, items: Any) -> None:
        self._sync: Iterator[Any] | None = None
        self._async: AsyncIterator[Any] | None = None
        if hasattr(items, "__aiter__"):
            self._async = aiter(items)
        else:
            self._sync = iter(items)
        self._pulling: asyncio.Future[None] | None = None
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
        (when a retry falls due), whichever is first.
        """
        assert self._async is not None
        loop = asyncio.get_running_loop()
        if self._pulling is not None:
            pulling = self._pulling
            if until is None:
                await asyncio.shield(pulling)
            else:
                await asyncio.wait([pulling], timeout=max(until - loop.time(), 0.0))
            return BUSY
        if self.exhausted:
            return END
        self._pulling = loop.create_future()
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

    async def aclose(self) -> None:
        """Close an async generator source (sync iterators are left to their owner)."""
        if self._async is not None:
            aclose = getattr(self._async, "aclose", None)
            if aclose is not None:
                await aclose()
