"""The ``async with`` of the objects that close themselves (or stop serving), written once.

`Closing` closes on the way out (``close()``); `Serving` starts on the way in and stops on the
way out (``start()`` / ``stop()``; its ``close()`` is ``stop()``). Either returns the object
itself from ``async with``. The exception, if any, goes on: neither suppresses it.
"""

from __future__ import annotations

from typing import Self

__all__ = ["Closing", "Serving"]


class Closing:
    """``async with obj:`` gives `obj` and awaits ``obj.close()`` when the block ends."""

    __slots__ = ()

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


class Serving(Closing):
    """``async with obj:`` awaits ``obj.start()``, gives `obj`, and awaits ``obj.stop()``.

    Its ``close()`` is ``stop()``.
    """

    __slots__ = ()

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        await self.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self
