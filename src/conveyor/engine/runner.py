"""The run: a fixed pool of worker tasks pulling items lazily, settling each exactly once.

Why a pool and not a task per item: `gather` over a million items builds a million tasks up front
(about a kilobyte each) and schedules every one through the loop. Here `concurrency` workers each
pull the next item only when they are free and ``await`` the function in line, so an item costs
one coroutine and one `Outcome`, and memory is bounded by the work in flight.

How the parts meet:

- Workers append settled outcomes to a buffer and wake the consumer. When the buffer is full they
  wait their turn (backpressure) in a FIFO; the consumer wakes one after each drain, and a woken
  worker that still sees room wakes the next, so a slow consumer slows the pool down instead of
  letting outcomes pile up, and a fast one never wakes more workers than there is room for.
- A failed attempt that the retry policy retries does *not* keep its worker: it goes into a heap
  keyed by the time it becomes due, and any free worker takes due retries before new items. The
  retry then runs under the same concurrency cap as a first attempt.
- Cancellation (the consumer cancelled or closed, or `fail_fast`) cancels the workers; each one
  settles its in-flight item as cancelled on the way out, and retries still waiting are settled as
  cancelled too.
"""

from __future__ import annotations

import asyncio
import heapq
import inspect
import logging
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextvars import copy_context
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .. import _clock
from ..errors import AttemptTimeout, DeadlineExceeded, SourceError
from ..policy.adaptive import AutoTimeout
from ..policy.retry import Retry, decide
from .events import Event, ItemFinished, ItemRetrying, ItemStarted, RunFinished
from .report import CANCELLED, FAILED, SUCCEEDED, Outcome, Summary
from .stats import FOLD_AT, LatencyStats

if TYPE_CHECKING:
    from ..limits.limiter import Limiter, Slot

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence

__all__ = ["Run"]


def _release(slots: list[Slot], error: BaseException | None, latency_s: float | None) -> None:
    for slot in slots:
        slot.release(error, latency_s)


T = TypeVar("T")
R = TypeVar("R")

logger = logging.getLogger("conveyor")

#: Settled outcomes the consumer may lag behind before workers wait for it.
BUFFER = 1024


class _Waiting:
    """An item waiting to be retried."""

    __slots__ = ("attempts", "error", "first_start", "index", "item")

    def __init__(
        self, index: int, item: Any, attempts: int, first_start: float, error: BaseException
    ) -> None:
        self.index = index
        self.item = item
        self.attempts = attempts
        self.first_start = first_start
        self.error = error


_END = object()


class Run(Generic[T, R]):
    """One run of `fn` over `items`. Build it, then iterate `outcomes()` once."""

    def __init__(
        self,
        fn: Callable[[T], Awaitable[R]] | Callable[[T], R],
        items: Any,
        *,
        is_async: bool,
        concurrency: int,
        retry: Retry,
        fail_fast: bool,
        on_event: Callable[[Event], object] | None,
        limiters: Sequence[Limiter] = (),
        cost: Callable[[T], float] | None = None,
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
        self._limiters = tuple(limiters)
        self._cost = cost
        self._auto_timeout = AutoTimeout() if retry.timeout_s == "auto" else None
        self._warmup_timers: dict[asyncio.Timeout, float] = {}
        self._executor: ThreadPoolExecutor | None = None
        self._call: Callable[[T], Awaitable[R]]
        if is_async:
            self._call = fn  # type: ignore[assignment]
        else:
            self._call = self._threaded(fn)
        self._sync_items: Iterator[T] | None = None
        self._async_items: AsyncIterator[T] | None = None
        if hasattr(items, "__aiter__"):
            self._async_items = aiter(items)
            self._pull_lock = asyncio.Lock()
        else:
            self._sync_items = iter(items)
        self._exhausted = False
        self._source_error: BaseException | None = None
        self._next_index = 0
        # Settled outcomes not yet taken by the consumer, and who waits on whom.
        self._out: deque[Outcome[T, R]] = deque()
        self._consumer_waiter: asyncio.Future[None] | None = None
        self._space_waiters: deque[asyncio.Future[None]] = deque()
        self._retries: list[tuple[float, int, _Waiting]] = []
        self._retry_seq = 0
        self._workers: list[asyncio.Task[None]] = []
        self._active_workers = 0
        self._fatal: BaseException | None = None
        # Counters for the summary.
        self._in_flight = 0
        self._max_in_flight = 0
        self._succeeded = 0
        self._failed = 0
        self._cancelled = 0
        self._retries_done = 0
        self._latency = LatencyStats()
        self._started_at = 0.0
        self._finished_at: float | None = None

    # -- calling the function -------------------------------------------------------------

    def _threaded(self, fn: Callable[[T], Any]) -> Callable[[T], Awaitable[Any]]:
        """Wrap a plain function to run in a thread pool as wide as the concurrency cap."""
        self._executor = ThreadPoolExecutor(
            max_workers=self._concurrency, thread_name_prefix="conveyor"
        )
        executor, loop = self._executor, self._loop

        async def call(item: T) -> Any:
            ctx = copy_context()
            result = await loop.run_in_executor(executor, ctx.run, fn, item)
            if inspect.isawaitable(result):
                # A plain function (often a lambda) that returns a coroutine: await it here.
                result = await result
            return result

        return call

    # -- the consumer side ----------------------------------------------------------------

    async def outcomes(self) -> AsyncIterator[Outcome[T, R]]:
        """Yield every outcome as it settles, in completion order."""
        self._started_at = self._loop_time()
        workers = self._concurrency
        self._active_workers = workers
        create = self._loop.create_task
        self._workers = [create(self._worker()) for _ in range(workers)]
        out = self._out
        latency = self._latency
        try:
            while True:
                while out:
                    yield out.popleft()
                if len(latency.pending) >= FOLD_AT:
                    latency.fold()
                if self._fatal is not None:
                    raise self._fatal
                if self._space_waiters:
                    self._space_waiters.popleft().set_result(None)
                if not self._active_workers:
                    if out:
                        continue
                    break
                waiter = self._consumer_waiter = self._loop.create_future()
                await waiter
            if self._source_error is not None:
                raise SourceError(self._next_index) from self._source_error
        finally:
            await self._shutdown()

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

    async def _shutdown(self) -> None:
        workers = [t for t in self._workers if not t.done()]
        for task in workers:
            task.cancel()
        if workers:
            await asyncio.wait(workers)
        now = self._loop_time()
        # Retries still waiting will not run: they are settled as cancelled.
        while self._retries:
            _, _, w = heapq.heappop(self._retries)
            self._settle(
                Outcome(
                    w.index, w.item, CANCELLED, None, w.error, w.attempts, 0.0, now - w.first_start
                )
            )
        if self._async_items is not None:
            aclose = getattr(self._async_items, "aclose", None)
            if aclose is not None:
                await aclose()
        if self._executor is not None:
            # Threads cannot be interrupted: a call already running finishes in the background.
            self._executor.shutdown(wait=False, cancel_futures=True)
        if self._finished_at is None:
            self._finished_at = now
            if self._on_event is not None:
                self._emit(RunFinished(self.summary()))

    # -- the workers ----------------------------------------------------------------------

    async def _wait_for_space(self) -> None:
        waiter = self._loop.create_future()
        self._space_waiters.append(waiter)
        await waiter
        # Chain the wake-up: if there is still room, the next waiting worker may go too.
        if len(self._out) < BUFFER and self._space_waiters:
            self._space_waiters.popleft().set_result(None)

    async def _pull_async(self) -> Any:
        assert self._async_items is not None
        async with self._pull_lock:
            if self._exhausted:
                return _END
            try:
                return await anext(self._async_items)
            except StopAsyncIteration:
                self._exhausted = True
                return _END
            except Exception as exc:
                self._source_failed(exc)
                return _END

    def _source_failed(self, exc: BaseException) -> None:
        self._exhausted = True
        self._source_error = exc

    async def _worker(self) -> None:  # noqa: C901, PLR0912, PLR0915 - the hot loop, kept in one piece
        loop_time = self._loop_time
        out = self._out
        retries = self._retries
        call = self._call
        policy = self._retry
        timeout_s = policy.timeout_s
        deadline_s = policy.deadline_s
        emit = self._emit if self._on_event is not None else None
        record_latency = self._latency.pending.append
        plain = timeout_s is None and deadline_s is None
        limiters = self._limiters
        auto_timeout = self._auto_timeout
        try:
            while True:
                if len(out) >= BUFFER:
                    await self._wait_for_space()
                    continue
                if retries and retries[0][0] <= loop_time():
                    _, _, waiting = heapq.heappop(retries)
                    index, item = waiting.index, waiting.item
                    attempt = waiting.attempts + 1
                    first_start: float | None = waiting.first_start
                elif not self._exhausted:
                    items = self._sync_items
                    if items is not None:
                        try:
                            item = next(items)
                        except StopIteration:
                            self._exhausted = True
                            continue
                        except Exception as exc:
                            self._source_failed(exc)
                            continue
                    else:
                        item = await self._pull_async()
                        if item is _END:
                            continue
                    index = self._next_index
                    self._next_index = index + 1
                    attempt = 1
                    first_start = None
                elif retries:
                    await asyncio.sleep(retries[0][0] - loop_time())
                    continue
                else:
                    return

                # The limiters first: waiting for them is not part of the call's latency.
                slots: list[Slot] | None = None
                if limiters:
                    if first_start is None:
                        first_start = loop_time()
                    try:
                        slots = await self._acquire(item)
                    except asyncio.CancelledError:
                        now = loop_time()
                        self._settle(
                            Outcome(
                                index,
                                item,
                                CANCELLED,
                                None,
                                None,
                                attempt - 1,
                                0.0,
                                now - first_start,
                            )
                        )
                        raise
                    except Exception as exc:  # an open circuit, or a cost no window admits
                        now = loop_time()
                        failed = self._after_failure(
                            index, item, attempt, exc, now, first_start, now
                        )
                        if failed is not None:
                            self._settle(failed)
                            if self._fail_fast and self._fatal is None:
                                self._fatal = exc
                                return
                        continue

                # One attempt.
                in_flight = self._in_flight + 1
                self._in_flight = in_flight
                self._max_in_flight = max(self._max_in_flight, in_flight)
                if emit is not None:
                    emit(ItemStarted(index, item, attempt))
                started = loop_time()
                if first_start is None:
                    first_start = started
                try:
                    if plain:
                        value = await call(item)
                    else:
                        value = await self._attempt_with_limits(item, started, first_start)
                except asyncio.CancelledError as exc:
                    self._in_flight -= 1
                    now = loop_time()
                    if slots:
                        _release(slots, exc, None)
                    self._settle(
                        Outcome(
                            index,
                            item,
                            CANCELLED,
                            None,
                            None,
                            attempt,
                            now - started,
                            now - first_start,
                        )
                    )
                    raise
                except Exception as exc:
                    now = loop_time()
                    self._in_flight -= 1
                    record_latency(now - started)
                    if slots:
                        _release(slots, exc, now - started)
                    failed = self._after_failure(
                        index, item, attempt, exc, started, first_start, now
                    )
                    if failed is not None:
                        self._settle(failed)
                        if self._fail_fast and self._fatal is None:
                            self._fatal = exc
                            return
                    continue
                except BaseException as exc:
                    # KeyboardInterrupt or SystemExit from the function: the item is settled as
                    # cancelled (carrying it), and the run stops with it.
                    self._in_flight -= 1
                    if slots:
                        _release(slots, exc, None)
                    now = loop_time()
                    self._settle(
                        Outcome(
                            index,
                            item,
                            CANCELLED,
                            None,
                            exc,
                            attempt,
                            now - started,
                            now - first_start,
                        )
                    )
                    raise
                # Succeeded: `_settle`, inlined for the common path.
                now = loop_time()
                self._in_flight -= 1
                took = now - started
                record_latency(took)
                if slots:
                    _release(slots, None, took)
                if auto_timeout is not None and auto_timeout.observe(took):
                    self._retime_warmup_attempts()
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
            if self._fatal is None:
                self._fatal = exc
            self._wake_consumer()
        finally:
            self._active_workers -= 1
            if not self._active_workers:
                self._wake_consumer()

    async def _acquire(self, item: T) -> list[Slot]:
        """Take a slot from every limiter, in order; give back what was taken on failure."""
        cost = float(self._cost(item)) if self._cost is not None else 1.0
        slots: list[Slot] = []
        try:
            for limiter in self._limiters:
                slots.append(await limiter.acquire(cost))  # noqa: PERF401 - each await may fail; keep what was taken
        except BaseException:
            for slot in slots:
                slot.settle(0.0)  # nothing was sent
                slot.release()
            raise
        return slots

    def _retime_warmup_attempts(self) -> None:
        """The automatic timeout just became known (or moved): apply it to attempts under way."""
        assert self._auto_timeout is not None
        timeout_s = self._auto_timeout.timeout_s()
        for timer, started in list(self._warmup_timers.items()):
            if not timer.expired():
                timer.reschedule(started + timeout_s)

    async def _attempt_with_limits(self, item: T, started: float, first_start: float) -> R:
        """Run one attempt under the policy's per-attempt timeout and the item's deadline."""
        policy = self._retry
        auto = self._auto_timeout
        limit: float | None
        warming = False
        if auto is not None:
            limit = auto.timeout_s()
            warming = not auto.warm
        else:
            limit = policy.timeout_s  # type: ignore[assignment]
        deadline_bound = False
        if policy.deadline_s is not None:
            remaining = policy.deadline_s - (started - first_start)
            if limit is None or remaining < limit:
                limit, deadline_bound = remaining, True
        assert limit is not None
        timer = asyncio.timeout_at(self._loop.time() + max(limit, 0.0))
        if warming and not deadline_bound:
            self._warmup_timers[timer] = self._loop.time()
        try:
            async with timer:
                return await self._call(item)
        except TimeoutError:
            if not timer.expired():
                raise  # the function's own TimeoutError, not ours
            if deadline_bound:
                raise DeadlineExceeded(policy.deadline_s or 0.0, 0) from None
            raise AttemptTimeout(limit) from None
        finally:
            if warming:
                self._warmup_timers.pop(timer, None)

    def _after_failure(
        self,
        index: int,
        item: T,
        attempt: int,
        exc: Exception,
        started: float,
        first_start: float,
        now: float,
    ) -> Outcome[T, R] | None:
        """Queue a retry (returning None) or build the failed outcome."""
        if isinstance(exc, DeadlineExceeded) and exc.attempts == 0:
            exc.attempts = attempt
            exc.args = (str(DeadlineExceeded(exc.deadline_s, attempt)),)
        policy = self._retry
        decision = decide(
            policy,
            attempt=attempt,
            exc=exc,
            elapsed_s=now - first_start,
            now_wall_s=_clock.wall(),
            u=policy.rng.random(),
        )
        if decision.retry:
            self._retries_done += 1
            self._retry_seq += 1
            waiting = _Waiting(index, item, attempt, first_start, exc)
            heapq.heappush(self._retries, (now + decision.delay_s, self._retry_seq, waiting))
            if self._on_event is not None:
                self._emit(
                    ItemRetrying(index, item, attempt, decision.delay_s, exc, decision.reason)
                )
            return None
        if attempt > 1 or decision.reason != "not retryable":
            exc.add_note(
                f"conveyor: item {index} failed after {attempt} attempt(s): {decision.reason}"
            )
        return Outcome(index, item, FAILED, None, exc, attempt, now - started, now - first_start)

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
            logger.exception("conveyor: the on_event hook raised on %r; the run goes on", event)

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
