"""The run: a pool of worker tasks pulling items lazily, settling each exactly once.

Why a pool and not a task per item: `gather` over a million items builds a million tasks up front
(about a kilobyte each) and schedules every one through the loop. Here at most `concurrency`
workers each pull the next item only when they are free and ``await`` the function in line, so
an item costs one coroutine and one `Outcome`, and memory is bounded by the work in flight.
Workers are started as items arrive, so a huge cap on a short input costs nothing.

How the parts meet:

- Workers append settled outcomes to a buffer and wake the consumer. When the buffer is full they
  wait their turn (backpressure) in a FIFO; the consumer wakes one after each drain, and a woken
  worker that still sees room wakes the next, so a slow consumer slows the pool down instead of
  letting outcomes pile up, and a fast one never wakes more workers than there is room for.
- A failed attempt that the retry policy retries does *not* keep its worker: it goes into a heap
  keyed by the time it becomes due, and any free worker takes due retries before new items. The
  retry then runs under the same concurrency cap as a first attempt.
- A source may hand over an item already settled (`conveyor.engine.settled.Settled`): it is
  settled as it comes, with no attempt and no limiter slot, and counted like any other.
- An error the run's ``halt_on`` says halts it (an exhausted quota, for the runners that ask)
  settles its item as cancelled, not failed; no new item is read after it, and the retries
  waiting are settled as cancelled too.
- Stopping (the consumer cancelled or closed, `fail_fast`, an interrupt) cancels the workers;
  each one settles its in-flight item as cancelled on the way out, and retries still waiting are
  settled as cancelled too. Shutdown finishes even if cancelled again meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ..errors import SourceError
from .attempt import Attempts, release
from .context import current_slots
from .events import Event, ItemFinished, ItemRetrying, ItemStarted, RunFinished
from .report import CANCELLED, FAILED, SUCCEEDED, Outcome, Summary
from .retrying import RetryQueue, Waiting, note, retry_decision
from .settled import Settled
from .source import BUSY, END, Source
from .stats import FOLD_AT, LatencyStats

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Sequence

    from ..limits.costs import Cost
    from ..limits.limiter import Limiter
    from ..limits.protocol import Ticket
    from ..policy.retry import Retry

__all__ = ["BUFFER", "Run"]

T = TypeVar("T")
R = TypeVar("R")

logger = logging.getLogger("conveyor")

#: Settled outcomes the consumer may lag behind before workers wait for it.
BUFFER = 1024


class Run(Generic[T, R]):
    """One run of `fn` over `items`. Build it, then iterate `outcomes()` once."""

    def __init__(
        self,
        fn: Callable[[T], Any],
        items: Any,
        *,
        is_async: bool,
        concurrency: int,
        retry: Retry,
        fail_fast: bool,
        on_event: Callable[[Event], object] | None,
        limiters: Sequence[Limiter] = (),
        cost: Callable[[T], Cost] | None = None,
        halt_on: Callable[[BaseException], bool] | None = None,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        # The loop's clock. The standard loops read time.monotonic; calling it directly saves a
        # Python-level call per reading, twice per item.
        is_standard_clock = type(self._loop).time is asyncio.BaseEventLoop.time
        self._loop_time: Callable[[], float] = (
            time.monotonic if is_standard_clock else self._loop.time
        )
        self._concurrency = concurrency
        self._retry = retry
        self._fail_fast = fail_fast
        self._on_event = on_event
        self._halt_on = halt_on
        self._attempts = Attempts(
            fn,
            is_async=is_async,
            policy=retry,
            concurrency=concurrency,
            limiters=limiters,
            cost=cost,
        )
        self._source = Source(items)
        self._next_index = 0
        # Settled outcomes not yet taken by the consumer, and who waits on whom.
        self._out: deque[Outcome[T, R]] = deque()
        self._consumer_waiter: asyncio.Future[None] | None = None
        self._space_waiters: deque[asyncio.Future[None]] = deque()
        self._retries = RetryQueue()
        self._workers: list[asyncio.Task[None]] = []
        self._active_workers = 0
        self._fatal: BaseException | None = None
        self._closing = False
        self._closed: asyncio.Future[None] = self._loop.create_future()
        # Counters for the summary.
        self._in_flight = 0
        self._max_in_flight = 0
        self._succeeded = 0
        self._failed = 0
        self._cancelled = 0
        self._retries_done = 0
        self._latency = LatencyStats()
        self._started_at = self._loop_time()
        self._finished_at: float | None = None
        self._hook_failures = 0

    # -- the consumer side ----------------------------------------------------------------

    async def outcomes(self) -> AsyncIterator[Outcome[T, R]]:
        """Yield every outcome as it settles, in completion order."""
        self._started_at = self._loop_time()
        self._spawn_worker()
        out = self._out
        latency = self._latency
        try:
            while True:
                while out and self._fatal is None and not self._closing:
                    yield out.popleft()
                if self._fatal is not None:
                    raise self._fatal
                if self._closing:
                    break
                if len(latency.pending) >= FOLD_AT:
                    latency.fold()
                if self._space_waiters:
                    self._space_waiters.popleft().set_result(None)
                if not self._active_workers:
                    if out:
                        continue
                    break
                waiter = self._consumer_waiter = self._loop.create_future()
                await waiter
            source = self._source
            if source.error is not None:
                raise SourceError(source.read) from source.error
        finally:
            await self._shutdown()

    def close_soon(self) -> None:
        """Stop the run from outside the consumer: in-flight items end as cancelled."""
        self._closing = True
        self._cancel_workers()
        self._wake_consumer()

    async def wait_closed(self) -> None:
        """Wait until the run has shut down (every item settled, `RunFinished` emitted)."""
        await asyncio.shield(self._closed)

    def drain(self) -> list[Outcome[T, R]]:
        """Take the outcomes settled but not yet yielded (those settled while shutting down)."""
        rest = list(self._out)
        self._out.clear()
        return rest

    def _wake_consumer(self) -> None:
        waiter = self._consumer_waiter
        if waiter is not None:
            self._consumer_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _cancel_workers(self) -> None:
        me = asyncio.current_task()
        for task in self._workers:
            if task is not me and not task.done():
                task.cancel()

    async def _shutdown(self) -> None:
        """Cancel the workers, settle what is left, and finish, even if cancelled meanwhile."""
        self._cancel_workers()
        interrupted: asyncio.CancelledError | None = None
        pending = [t for t in self._workers if not t.done()]
        while pending:
            try:
                await asyncio.wait(pending)
            except asyncio.CancelledError as exc:  # cancelled again: finish first, then obey
                interrupted = exc
            pending = [t for t in self._workers if not t.done()]
        try:
            now = self._loop_time()
            # Retries still waiting will not run: they are settled as cancelled.
            for w in self._retries.drain():
                elapsed = now - w.first_start
                self._settle(
                    Outcome(w.index, w.item, CANCELLED, None, w.error, w.attempts, 0.0, elapsed)
                )
            # An item a detached pull got that no worker took: read, so settled too.
            item = await self._source.leftover()
            if item is not END:
                index = self._next_index
                self._next_index = index + 1
                if type(item) is Settled:
                    self._settle_given(index, item)
                else:
                    self._settle(Outcome(index, item, CANCELLED, None, None, 0, 0.0, 0.0))
            self._attempts.shutdown()
            await self._source.aclose()
        finally:
            if self._finished_at is None:
                self._finished_at = self._loop_time()
                if self._on_event is not None:
                    self._emit(RunFinished(self.summary()))
            if not self._closed.done():
                self._closed.set_result(None)
        if interrupted is not None:
            raise interrupted

    # -- the workers ----------------------------------------------------------------------

    def _spawn_worker(self) -> None:
        self._active_workers += 1
        self._workers.append(self._loop.create_task(self._worker()))

    async def _wait_for_space(self) -> None:
        waiter = self._loop.create_future()
        self._space_waiters.append(waiter)
        await waiter
        # Chain the wake-up: if there is still room, the next waiting worker may go too.
        if len(self._out) < BUFFER and self._space_waiters:
            self._space_waiters.popleft().set_result(None)

    async def _worker(self) -> None:  # noqa: C901, PLR0912, PLR0915 - the hot loop, kept whole
        loop_time = self._loop_time
        out = self._out
        retries = self._retries.heap
        source = self._source
        attempts = self._attempts
        call = attempts.call
        bounded = attempts.bounded
        limited = attempts.limited
        learn = attempts.auto_timeout is not None
        emit = self._emit if self._on_event is not None else None
        record_latency = self._latency.pending.append
        me = asyncio.current_task()
        assert me is not None
        set_slots = current_slots.set
        if not limited:
            set_slots(())  # not the slots of an outer run this one is nested in
        try:
            while self._fatal is None:
                if len(out) >= BUFFER:
                    await self._wait_for_space()
                    continue
                if retries and retries[0][0] <= loop_time():
                    waiting = self._retries.pop()
                    index, item = waiting.index, waiting.item
                    attempt = waiting.attempts + 1
                    first_start: float | None = waiting.first_start
                elif not source.exhausted:
                    items = source.sync_iterator
                    if items is not None:
                        try:
                            item = next(items)
                        except StopIteration:
                            source.exhausted = True
                            continue
                        except Exception as exc:
                            source.failed(exc)
                            continue
                        source.read += 1
                    else:
                        item = await source.pull(until=retries[0][0] if retries else None)
                        if item is END or item is BUSY:
                            continue
                    index = self._next_index
                    self._next_index = index + 1
                    if type(item) is Settled:  # settled by the source: no call, no slot
                        self._settle_given(index, item)
                        continue
                    attempt = 1
                    first_start = None
                    if len(self._workers) < self._concurrency:
                        self._spawn_worker()  # one more worker, for the next item
                elif retries:
                    await asyncio.sleep(retries[0][0] - loop_time())
                    continue
                else:
                    return

                # The limiters first: waiting for them is not part of the call's latency.
                slots: list[Ticket] | None = None
                if limited:
                    if first_start is None:
                        first_start = loop_time()
                    try:
                        slots = await attempts.acquire(item)
                    except asyncio.CancelledError:
                        now = loop_time()
                        elapsed = now - first_start
                        self._settle(
                            Outcome(index, item, CANCELLED, None, None, attempt - 1, 0.0, elapsed)
                        )
                        raise
                    except Exception as exc:  # an open circuit, or a cost no window admits
                        now = loop_time()
                        self._failed_attempt(index, item, attempt, exc, now, first_start, now)
                        continue

                # One attempt.
                in_flight = self._in_flight + 1
                self._in_flight = in_flight
                if in_flight > self._max_in_flight:  # noqa: PLR1730 - cheaper than max()
                    self._max_in_flight = in_flight
                if emit is not None:
                    emit(ItemStarted(index, item, attempt))
                started = loop_time()
                if first_start is None:
                    first_start = started
                if slots:
                    for slot in slots:  # dated when the call goes out, not when granted
                        slot.mark_sent(started)
                    set_slots(slots)
                try:
                    if bounded:
                        value = await attempts.bounded_call(item, started, first_start)
                    else:
                        value = await call(item)
                except asyncio.CancelledError as exc:
                    self._in_flight -= 1
                    now = loop_time()
                    if slots:
                        release(slots, exc, None)
                    if me.cancelling():
                        elapsed = now - first_start
                        self._settle(
                            Outcome(
                                index, item, CANCELLED, None, None, attempt, now - started, elapsed
                            )
                        )
                        raise
                    # The function itself raised CancelledError (it awaited something that
                    # was cancelled) while nobody cancelled this worker: an ordinary failure.
                    record_latency(now - started)
                    self._failed_attempt(index, item, attempt, exc, started, first_start, now)
                    continue
                except Exception as exc:
                    now = loop_time()
                    self._in_flight -= 1
                    record_latency(now - started)
                    if slots:
                        release(slots, exc, now - started)
                    self._failed_attempt(index, item, attempt, exc, started, first_start, now)
                    continue
                except BaseException as exc:
                    # KeyboardInterrupt or SystemExit from the function: the item is settled as
                    # cancelled (carrying it), and the run stops with it.
                    self._in_flight -= 1
                    if slots:
                        release(slots, exc, None)
                    now = loop_time()
                    elapsed = now - first_start
                    self._settle(
                        Outcome(index, item, CANCELLED, None, exc, attempt, now - started, elapsed)
                    )
                    raise
                # Succeeded: `_settle`, inlined for the common path.
                now = loop_time()
                self._in_flight -= 1
                took = now - started
                record_latency(took)
                if slots:
                    release(slots, None, took)
                if learn:
                    attempts.succeeded(took)
                outcome = Outcome(
                    index, item, SUCCEEDED, value, None, attempt, took, now - first_start
                )
                self._succeeded += 1
                out.append(outcome)
                waiter = self._consumer_waiter
                if waiter is not None:
                    self._consumer_waiter = None
                    waiter.set_result(None)
                if emit is not None:
                    emit(ItemFinished(outcome))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            # KeyboardInterrupt or SystemExit raised by the function (or a bug here): the run
            # stops and the consumer re-raises it.
            self._stop(exc)
        finally:
            self._active_workers -= 1
            if not self._active_workers:
                self._wake_consumer()

    def _stop(self, exc: BaseException) -> None:
        """Stop the run at once because of `exc` (fail-fast, interrupt): the consumer raises it."""
        if self._fatal is None:
            self._fatal = exc
        self._cancel_workers()
        self._wake_consumer()

    def _failed_attempt(
        self,
        index: int,
        item: T,
        attempt: int,
        exc: BaseException,
        started: float,
        first_start: float,
        now: float,
    ) -> None:
        """Queue a retry, or settle the item as failed (and stop the run if failing fast).

        An error that halts the run (``halt_on``) settles the item as cancelled instead.
        """
        if self._halt_on is not None and self._halt_on(exc):
            self._halt(index, item, attempt, exc, now - started, now - first_start, now)
            return
        decision = retry_decision(
            self._retry, attempt=attempt, exc=exc, elapsed_s=now - first_start
        )
        if decision.retry:
            self._retries_done += 1
            self._retries.push(
                now + decision.delay_s, Waiting(index, item, attempt, first_start, exc)
            )
            if self._on_event is not None:
                self._emit(
                    ItemRetrying(index, item, attempt, decision.delay_s, exc, decision.reason)
                )
            return
        if attempt > 1 or decision.reason != "not retryable":
            note(exc, f"item {index} failed after {attempt} attempt(s): {decision.reason}")
        self._settle(
            Outcome(index, item, FAILED, None, exc, attempt, now - started, now - first_start)
        )
        if self._fail_fast:
            self._stop(exc)

    def _halt(
        self,
        index: int,
        item: T,
        attempt: int,
        exc: BaseException,
        took: float,
        elapsed: float,
        now: float,
    ) -> None:
        """Settle the item as cancelled (it did not fail: the run halted), and admit no more.

        No new item is read, and the retries waiting are settled as cancelled too; calls in
        flight end as they do (each halting error among them is settled the same way).
        """
        self._source.exhausted = True
        self._settle(Outcome(index, item, CANCELLED, None, exc, attempt, took, elapsed))
        for w in self._retries.drain():
            self._settle(
                Outcome(
                    w.index, w.item, CANCELLED, None, w.error, w.attempts, 0.0, now - w.first_start
                )
            )

    def _settle_given(self, index: int, given: Settled[T, R]) -> None:
        """Settle an item its source handed over settled (no attempt, no latency)."""
        state = SUCCEEDED if given.error is None else FAILED
        self._settle(Outcome(index, given.item, state, given.value, given.error, 0, 0.0, 0.0))

    def _settle(self, outcome: Outcome[T, R]) -> None:
        if outcome.state == SUCCEEDED:
            self._succeeded += 1
        elif outcome.state == FAILED:
            self._failed += 1
        else:
            self._cancelled += 1
        self._out.append(outcome)
        self._wake_consumer()
        if self._on_event is not None:
            self._emit(ItemFinished(outcome))

    def _emit(self, event: Event) -> None:
        assert self._on_event is not None
        try:
            self._on_event(event)
        except Exception:
            # The first failure with its traceback; after that one line each, at debug level,
            # so a broken progress bar cannot flood the log of a million-item run.
            self._hook_failures += 1
            if self._hook_failures == 1:
                logger.exception("conveyor: the on_event hook raised on %r; the run goes on", event)
            else:
                logger.debug("conveyor: the on_event hook raised again on %r", event)

    # -- the numbers ----------------------------------------------------------------------

    def summary(self) -> Summary:
        """Return the summary of what has settled so far."""
        end = self._finished_at if self._finished_at is not None else self._loop_time()
        duration = max(end - self._started_at, 0.0)
        settled = self._succeeded + self._failed
        lat = self._latency
        return Summary(
            total=settled + self._cancelled,
            succeeded=self._succeeded,
            failed=self._failed,
            cancelled=self._cancelled,
            retries=self._retries_done,
            duration_s=duration,
            latency_mean_s=lat.mean_s,
            latency_p50_s=lat.percentile_s(50),
            latency_p95_s=lat.percentile_s(95),
            latency_p99_s=lat.percentile_s(99),
            latency_max_s=lat.max_s,
            throughput_per_s=settled / duration if duration else 0.0,
            max_concurrency=self._max_in_flight,
            concurrency=self._concurrency,
        )
