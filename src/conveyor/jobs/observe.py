"""What a worker tells observers (metrics, traces) about its work, and how it is told.

A `Worker` takes ``observers=``: each is a `JobObserver`, whose hooks it calls as it works:

- `claimed`: it claimed items of a job (one call per claim);
- `running`: around its run of a job's claimed items: a context manager, or None;
- `attempt`: around each attempt at an item, with the item's input, parsed: a context manager
  that gives a callable to hand the attempt's value to, or None (nothing to see this time);
- `event`: every event of the engine (`conveyor.engine.events`): an attempt started, a retry,
  an item settled.

The hooks run in the event loop, in the worker's path: keep them quick (``bench/observers.py``
measures what they cost). A hook an observer does not override is not called at all. An
observer that raises is logged once and otherwise ignored (`Observers`): what is seen of the
work is never worth losing the work.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from types import TracebackType

    from ..engine.events import Event
    from .model import Claim, ClaimedItem, Job

__all__ = ["JobObserver", "Observers"]

logger = logging.getLogger("conveyor.jobs")
T = TypeVar("T")


def _ignore(value: Any) -> None:
    del value


class JobObserver:
    """Observes a worker: each hook does nothing here; override the ones you need."""

    def claimed(self, worker_id: str, claim: Claim) -> None:
        """The worker `worker_id` claimed `claim` (its job as the claim left it)."""

    def running(self, worker_id: str, job: Job) -> contextlib.AbstractContextManager[Any] | None:
        """A context around the worker's run of `job`'s claimed items, or None."""
        del worker_id, job
        return None

    def attempt(
        self, job: Job, item: ClaimedItem, item_input: Any
    ) -> contextlib.AbstractContextManager[Callable[[Any], None]] | None:
        """A context around one attempt at `item` (`item_input`: its input, parsed), or None.

        The context gives a callable the worker hands the attempt's value to, if the task
        returned one; an attempt that raised leaves the context with its exception.
        """
        del job, item, item_input
        return None

    def event(self, job: Job, event: Event) -> None:
        """An event of the engine running `job`'s items."""

    def live(self) -> bool:
        """Whether its `attempt` hook does anything now (asked once per run of a job's claim).

        An observer that is off (tracing with nowhere to send spans) is then not asked per
        attempt: its cost per item is nothing.
        """
        return True


class _Together:
    """The contexts of several observers as one; each one's failure contained."""

    __slots__ = ("_contexts", "_entered", "_owner")

    def __init__(
        self, owner: Observers, contexts: list[contextlib.AbstractContextManager[Any]]
    ) -> None:
        self._owner = owner
        self._contexts = contexts
        self._entered: list[tuple[contextlib.AbstractContextManager[Any], Any]] = []

    def answered(self, value: Any) -> None:
        for _, answered in self._entered:
            try:
                answered(value)
            except Exception as exc:
                self._owner.failed(exc)

    def __enter__(self) -> Callable[[Any], None]:
        for context in self._contexts:
            try:
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


#: What `Observers` gives when no observer has a context: nothing to enter, nothing to tell.
_NOTHING: contextlib.nullcontext[Callable[[Any], None]] = contextlib.nullcontext(_ignore)


def _overrides(observer: JobObserver, hook: str) -> bool:
    return getattr(type(observer), hook) is not getattr(JobObserver, hook)


class Observers:
    """Several observers as one, each call guarded: a failing observer is logged, not raised."""

    __slots__ = ("_attempt", "_claimed", "_event", "_logged", "_running", "observers")

    def live_attempts(self) -> list[JobObserver]:
        """The observers with an `JobObserver.attempt` hook that are `JobObserver.live` now."""
        return self._each(self._attempt, lambda o: o if o.live() else None)

    def __init__(self, observers: Sequence[JobObserver] = ()) -> None:
        self.observers = tuple(observers)
        # Only the observers that have a hook are called for it (the hot path stays short).
        self._claimed = [o for o in self.observers if _overrides(o, "claimed")]
        self._running = [o for o in self.observers if _overrides(o, "running")]
        self._attempt = [o for o in self.observers if _overrides(o, "attempt")]
        self._event = [o for o in self.observers if _overrides(o, "event")]
        self._logged = False

    def failed(self, exc: Exception) -> None:
        """An observer raised: logged with its traceback once, then at debug level."""
        if self._logged:
            logger.debug("conveyor worker: an observer failed: %r", exc)
            return
        self._logged = True
        logger.error("conveyor worker: an observer failed (ignored; logged once)", exc_info=exc)

    def _each(
        self, observers: list[JobObserver], call: Callable[[JobObserver], T | None]
    ) -> list[T]:
        """``call(o)`` for each of `observers`, guarded; what the calls returned, but None."""
        returned: list[T] = []
        for o in observers:
            try:
                value = call(o)
            except Exception as exc:
                self.failed(exc)
                continue
            if value is not None:
                returned.append(value)
        return returned

    def claimed(self, worker_id: str, claim: Claim) -> None:
        """`JobObserver.claimed` of each."""
        self._each(self._claimed, lambda o: o.claimed(worker_id, claim))

    def event(self, job: Job, event: Event) -> None:
        """`JobObserver.event` of each."""
        for o in self._event:  # twice per item: a plain loop, nothing made per call
            try:
                o.event(job, event)
            except Exception as exc:
                self.failed(exc)

    def running(self, worker_id: str, job: Job) -> contextlib.AbstractContextManager[Any]:
        """`JobObserver.running` of each, as one context."""
        contexts = self._each(self._running, lambda o: o.running(worker_id, job))
        return _Together(self, contexts) if contexts else _NOTHING

    def attempt(
        self,
        job: Job,
        item: ClaimedItem,
        item_input: Any,
        among: list[JobObserver] | None = None,
    ) -> contextlib.AbstractContextManager[Callable[[Any], None]]:
        """`JobObserver.attempt` of each (or of those `among` them), as one context.

        Per attempt, so kept short: a job's run passes its `live_attempts`.
        """
        observers = self._attempt if among is None else among
        if not observers:
            return _NOTHING
        contexts = self._each(observers, lambda o: o.attempt(job, item, item_input))
        return _Together(self, contexts) if contexts else _NOTHING
