"""What a worker tells observers (metrics, traces) about its work, and how it is told.

A `Worker` takes ``observers=``: each is a `JobObserver`, whose hooks it calls as it works:

- `claimed`: it claimed items of a job (one call per claim);
- `running`: around its run of a job's claimed items (a context manager);
- `attempt`: around each attempt at an item, with the item's input, parsed; the context
  gives a callable to hand the attempt's value to (`answered`);
- `event`: every event of the engine (`conveyor.engine.events`): an attempt started, a retry,
  an item settled.

The hooks run in the event loop, in the worker's path: keep them quick. An observer that
raises is logged once and otherwise ignored (`Observers`): what is seen of the work is never
worth losing the work.
"""

from __future__ import annotations

import contextlib
import logging
from functools import partial
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from types import TracebackType

    from ..engine.events import Event
    from .model import Claim, ClaimedItem, Job

__all__ = ["JobObserver", "Observers"]

logger = logging.getLogger("conveyor.jobs")


def _ignore(value: Any) -> None:
    del value


class JobObserver:
    """Observes a worker: each hook does nothing here; override the ones you need."""

    def claimed(self, worker_id: str, claim: Claim) -> None:
        """The worker `worker_id` claimed `claim` (its job as the claim left it)."""

    @contextlib.contextmanager
    def running(self, worker_id: str, job: Job) -> Iterator[None]:
        """Around the worker's run of `job`'s claimed items (until it has none left)."""
        del worker_id, job
        yield

    @contextlib.contextmanager
    def attempt(
        self, job: Job, item: ClaimedItem, item_input: Any
    ) -> Iterator[Callable[[Any], None]]:
        """Around one attempt at `item` (`item_input` is its input, parsed).

        Yields a callable the worker hands the attempt's value to, if the task returned one;
        an attempt that raised leaves the context with its exception.
        """
        del job, item, item_input
        yield _ignore

    def event(self, job: Job, event: Event) -> None:
        """An event of the engine running `job`'s items."""


class _Together:
    """The contexts of several observers as one; each one's failure contained."""

    __slots__ = ("_entered", "_makers", "_owner")

    def __init__(
        self, owner: Observers, makers: list[Callable[[], contextlib.AbstractContextManager[Any]]]
    ) -> None:
        self._owner = owner
        self._makers = makers
        self._entered: list[tuple[contextlib.AbstractContextManager[Any], Any]] = []

    def answered(self, value: Any) -> None:
        for _, answered in self._entered:
            try:
                answered(value)
            except Exception as exc:
                self._owner.failed(exc)

    def __enter__(self) -> Callable[[Any], None]:
        for make in self._makers:
            try:
                context = make()
                self._entered.append((context, context.__enter__()))
            except Exception as exc:
                self._owner.failed(exc)
        return self.answered

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for context, _ in reversed(self._entered):
            try:
                context.__exit__(exc_type, exc, tb)  # never suppresses the task's error
            except Exception as error:
                self._owner.failed(error)


#: What `Observers` gives without observers: nothing to enter, nothing to tell.
_NOTHING: contextlib.nullcontext[Callable[[Any], None]] = contextlib.nullcontext(_ignore)


class Observers:
    """Several observers as one, each call guarded: a failing observer is logged, not raised."""

    __slots__ = ("_logged", "observers")

    def __init__(self, observers: Sequence[JobObserver] = ()) -> None:
        self.observers = tuple(observers)
        self._logged = False

    def failed(self, exc: Exception) -> None:
        """An observer raised: logged with its traceback once, then at debug level."""
        if self._logged:
            logger.debug("conveyor worker: an observer failed: %r", exc)
            return
        self._logged = True
        logger.error("conveyor worker: an observer failed (ignored; logged once)", exc_info=exc)

    def claimed(self, worker_id: str, claim: Claim) -> None:
        """`JobObserver.claimed` of each."""
        for o in self.observers:
            try:
                o.claimed(worker_id, claim)
            except Exception as exc:
                self.failed(exc)

    def event(self, job: Job, event: Event) -> None:
        """`JobObserver.event` of each."""
        for o in self.observers:
            try:
                o.event(job, event)
            except Exception as exc:
                self.failed(exc)

    def running(self, worker_id: str, job: Job) -> contextlib.AbstractContextManager[Any]:
        """`JobObserver.running` of each, as one context."""
        if not self.observers:
            return _NOTHING
        return _Together(self, [partial(o.running, worker_id, job) for o in self.observers])

    def attempt(
        self, job: Job, item: ClaimedItem, item_input: Any
    ) -> contextlib.AbstractContextManager[Callable[[Any], None]]:
        """`JobObserver.attempt` of each, as one context."""
        if not self.observers:
            return _NOTHING
        return _Together(self, [partial(o.attempt, job, item, item_input) for o in self.observers])
