"""One worker's run of one job: claimed items through `conveyor.stream`, results checkpointed.

The items come from an async generator that claims more of the job's pending items (a batch
at a time) as the engine asks for them, so a worker holds only ``claim_size`` items beyond
those in flight. Every settled item arrives through the engine's ``ItemFinished`` event (also
those cancelled when the run is closed) and goes into a buffer. A writer task writes the
buffer as soon as it is free (group commit): one transaction takes whatever settled while the
last one was being written (at most ``batch_size`` results each), and nothing waits on a
timer. A worker killed at any moment has therefore left unwritten only its items in flight
and one transaction's worth of results.

A store that cannot be reached (`StoreUnavailable`) ends nothing: the writer and the claims
retry through the worker's `Outage` (logged once), finished results stay in the buffer, and
claims wait while it holds ``batch_size`` results or more, so what is kept in memory is
bounded by what was claimed. Only a worker told to stop gives up on an unreachable store,
after ``grace_s``: its items then go back to pending when its lease lapses.

A heartbeat task, every ``flush_interval_s``: reports the items started, publishes the
progress tasks reported, renews the lease (every ``lease_s / 3``), and watches for the three
reasons to stop early:

- the job is being cancelled: close the run; in-flight items settle as cancelled, recorded;
- the worker is stopping (SIGTERM): no new claims, and claimed items not yet started go back
  to pending at once; in-flight items may finish until ``grace_s``, then the run is closed
  and the items still in flight are released (pending);
- the lease was lost (another worker re-queued our items): close the run and record nothing.

With a spend budget (the job's ``max_cost_usd``, for the http tasks), an item starts only if
it fits (`conveyor.jobs.job_budget`); one that cannot fit ends the run's admissions: it and
the items not started go back to pending, the step says why, and `halted` tells the worker
not to claim the job again (see `conveyor.jobs.worker`).

An error that says the API's quota or spend cap is used up (`conveyor.limits.quota`, the rule
``conveyor run`` and the wrapped clients follow) halts the run the same way: its item is
settled as cancelled by the engine and goes back to pending, no item is started after it, and
the step says why. Running it again after adding credit resumes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Mapping
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any

from .. import _clock
from ..engine.api import halting_stream
from ..engine.events import ItemFinished
from ..engine.settled import Settled
from ..limits.quota import quota_halt
from ..policy.retry import Retry
from .app import TaskContext
from .errors import StoreUnavailable
from .job_budget import JobBudget
from .model import ItemResult

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from ..engine.api import Stream
    from ..engine.events import Event
    from ..limits.costs import Cost
    from ..limits.limiter import Limiter
    from .app import Task
    from .model import Claim, ClaimedItem, Job
    from .worker import Worker

__all__ = ["JobRun"]

logger = logging.getLogger("conveyor.jobs")


#: Error messages are stored up to this many characters (an HTTP error can carry a page).
MAX_ERROR_CHARS = 8192


def _encode(value: Any) -> str:
    # allow_nan=False: NaN and Infinity are not JSON; such a result fails its item (ValueError)
    # instead of breaking every later read of the results.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _text(value: str) -> str:
    """A task's text as every store can keep it: PostgreSQL refuses NUL in text."""
    return value.replace("\x00", "\ufffd")


async def _first_of(*events: asyncio.Event) -> None:
    """Wait until any of `events` is set."""
    waits = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


def _claim_target(concurrency: int) -> int:
    """Items a run holds at most (in flight plus claimed): the concurrency and a prefetch."""
    return concurrency + max(1, concurrency // 4)


_UNREAD = object()  # an item whose input was not read for its next attempt yet


class JobRun:
    """Runs the claimed items of one job on one worker; see the module docstring."""

    def __init__(
        self, worker: Worker, claim: Claim, task: Task, limiters: tuple[Limiter, ...]
    ) -> None:
        self._worker = worker
        # Per item, so looked up once: the attempt observers that are on, and the wall clock.
        self._attempt_observers = worker.observers.live_attempts()
        self._wall = _clock.wall_source()
        self._store = worker.store
        self._options = worker.options
        self.job: Job = claim.job
        self._task = task
        self._limiters = limiters
        self._queue: deque[ClaimedItem] = deque(claim.items)
        self._buffer: list[ItemResult] = []
        self._release: list[tuple[str, int]] = []
        self._inflight: dict[int, float] = {}
        self._step: str | None = None
        self._progress_dirty = False
        self._cancelling = False
        self._lost = False
        self._stream: Stream[ClaimedItem, str] | None = None
        self._flushing = asyncio.Lock()
        self._written = asyncio.Event()  # set by the writer whenever the buffer shrank
        self._to_write = asyncio.Event()  # set when results wait in the buffer
        self._outage = worker.outage
        self._write: asyncio.Future[None] | None = None  # the writer's write under way
        self._closer: asyncio.Task[None] | None = None
        self._renewed_at = 0.0
        self._handed_back = False
        self._clear_step = False
        self._error_logged = False  # a failed write or beat is logged once, until one works
        self._waiting: str | None = None
        self._step_before_wait: str | None = None
        self.settled = 0
        # Attempts count when an item starts: started items not yet reported to the store,
        # and those reported (their result then carries one attempt less).
        self._unmarked: set[int] = set()
        self._marked: set[int] = set()
        self._yielded = 0
        self._finished = 0
        # An item's input read for its next attempt's cost or budget, taken by the attempt:
        # one parse per attempt, and each attempt still gets a value of its own.
        self._read: dict[int, Any] = {}
        #: Why the run stopped admitting items early (the budget, the quota), or None.
        self.halted: str | None = None
        max_usd = claim.job.options.max_cost_usd
        self._budget = (
            None if max_usd is None else JobBudget(claim.job.id, max_usd, task, worker.store)
        )

    # -- what the engine runs --------------------------------------------------------------

    async def _items(self) -> AsyncIterator[ClaimedItem | Settled[ClaimedItem, str]]:
        while not self._stopped():
            if not self._queue:
                if not await self._claim_more():
                    return
                continue
            item = self._queue.popleft()
            try:
                ready = await self._ready(item)
            except BaseException:  # the run closed while it waited
                self._queue.appendleft(item)
                raise
            if ready is None:  # refused by the budget (the run halts), or stopped meanwhile
                self._queue.appendleft(item)  # released to pending by `_finish`
                return
            self._yielded += 1
            yield ready

    async def _ready(self, item: ClaimedItem) -> ClaimedItem | Settled[ClaimedItem, str] | None:
        """`item` settled by the cache, or itself once the budget it may use is held.

        None if the budget refused it (the run halts: `halted` says why) or the run stopped
        while it waited. A cache hit takes no budget, no limiter slot and no call.
        """
        if self._task.recall is not None:
            hit = await self._recalled(item)
            if hit is not None:
                return hit
        if self._budget is not None:
            why = await self._budget.admit(item, self._input(item), stopped=self._stopped)
            if why is not None:  # refused, or "": it stopped meanwhile
                if why:
                    self._halt(why)
                return None
        return item

    async def _recalled(self, item: ClaimedItem) -> Settled[ClaimedItem, str] | None:
        """`item` settled by its task's response cache (`Task.recall`), or None: send it.

        A cache that fails to answer is asked again by the call, which then fails (retried)
        as it did before the worker asked first.
        """
        assert self._task.recall is not None
        item_input = self._input(item)
        try:
            hit = await self._task.recall(item_input, self.job.tenant)
        except Exception:
            return None
        if hit is None:
            return None
        if self._budget is not None:  # as a stored result counts when the spend is summed
            self._budget.add(hit, item_input)
        return Settled(item, _encode(hit))

    async def _claim_more(self) -> bool:
        """Claim more of the job's pending items into the queue; False if there are none."""
        o = self._options
        # Claims wait while the buffer is full (the store is slow or unreachable): what a
        # worker keeps in memory stays bounded by what it claimed.
        while len(self._buffer) >= o.batch_size and not self._stopped():
            self._written.clear()
            await _first_of(self._written, self._worker.stopped)
        if self._stopped():
            return False
        limit = o.claim_size
        if limit is None:
            # About the concurrency: what a worker holds is what it runs, and other workers
            # can take the rest (counts.running then means "in flight").
            held = self._yielded - self._finished
            limit = max(1, _claim_target(self.job.options.concurrency) - held)
        claim_some = partial(self._claim_under_lease, limit)
        try:
            _, claim = await self._worker.unless_stopped(
                self._outage.call(claim_some, doing="claiming items", give_up=self._stopped)
            )
        except StoreUnavailable:
            return False  # stopping: what is claimed goes back at the end
        if claim is None:  # none left, or stopped while a silent store held the claim
            return False
        self._queue.extend(claim.items)
        return True

    async def _claim_under_lease(self, limit: int) -> Claim | None:
        """Claim more of the job's items, once the lease is known to be still this run's.

        A claim would otherwise take the lease back after another process found it lapsed
        and put this run's items back to pending: the run would claim items it is still
        calling, and call them twice. So the lease is renewed first (one write per claim);
        if it is gone the run is lost: it claims nothing, closes and records nothing.
        """
        try:
            if not await self._renew(due=True):
                return None  # lost
        except StoreUnavailable:
            raise  # the outage's retries (see `_claim_more`)
        except Exception as exc:
            # As on a heartbeat: one failed write must not end the run; the claim goes on
            # under the lease as last renewed, and the next beat renews it.
            self._log_error("renewing the lease before a claim failed; claiming", exc)
        return await self._worker.claim(limit=limit, job_id=self.job.id)

    def _stopped(self) -> bool:
        """Whether the run takes no more items (stopping, cancelled, or its lease lost)."""
        return self._worker.stopping or self._cancelling or self._lost

    def _halt(self, why: str) -> None:
        self.halted = self._step = why
        self._progress_dirty = True

    def _quota(self, error: BaseException) -> bool:
        """Halt the run if `error` says the quota is used up (the engine cancels its item)."""
        halted = quota_halt(error, self._limiters)
        if halted is None:
            return False
        if self.halted is None:
            self._halt(_text(str(halted)))
        return True

    async def _call(self, item: ClaimedItem) -> str:
        if item.index not in self._marked:
            self._unmarked.add(item.index)
        ctx = TaskContext(
            item.job_id, item.index, item.attempts, self._report, tenant=self.job.tenant
        )
        item_input = self._read.pop(item.index, _UNREAD)
        if item_input is _UNREAD:
            item_input = json.loads(item.input_json)
        if self._attempt_observers:
            observers = self._worker.observers
            with observers.attempt(self.job, item, item_input, self._attempt_observers) as answered:
                value = await self._task.call(item_input, ctx)
                answered(value)
        else:
            value = await self._task.call(item_input, ctx)
        if self._budget is not None:
            self._budget.add(value, item_input)
        return _encode(value)  # a value that is not JSON fails the item (TypeError)

    def _report(self, index: int, fraction: float, step: str | None) -> None:
        self._inflight[index] = fraction
        if step is not None:
            self._step = _text(step)
        self._progress_dirty = True

    def _on_event(self, event: Event) -> None:
        self._worker.observers.event(self.job, event)
        if not isinstance(event, ItemFinished):
            return
        o = event.outcome
        item: ClaimedItem = o.item
        self._finished += 1
        self._read.pop(item.index, None)
        if self._budget is not None:
            self._budget.release(item.index)
        attempts = o.attempts
        if item.index in self._marked:
            # One attempt was counted when it started: the result carries the others.
            self._marked.discard(item.index)
            attempts = max(0, attempts - 1)
        self._unmarked.discard(item.index)
        if self._inflight.pop(item.index, None) is not None:
            self._progress_dirty = True
        if self._lost:
            return
        self._to_write.set()
        if o.state == "succeeded":
            self._buffer.append(
                ItemResult(
                    item.job_id,
                    item.index,
                    "succeeded",
                    attempts,
                    o.latency_s,
                    o.value,
                    finished_at=self._wall(),  # the second it ended in, for the rate series
                )
            )
        elif o.state == "failed":
            self._buffer.append(
                ItemResult(
                    item.job_id,
                    item.index,
                    "failed",
                    attempts,
                    o.latency_s,
                    error_type=o.error_type and _text(o.error_type),
                    error_message=_text((o.error_message or "")[:MAX_ERROR_CHARS]),
                    finished_at=self._wall(),
                )
            )
        elif self._cancelling:
            self._buffer.append(ItemResult(item.job_id, item.index, "cancelled", attempts, None))
        else:  # closed because the worker stops: the item goes back to pending
            self._release.append((item.job_id, item.index))

    # -- checkpoints -----------------------------------------------------------------------

    async def flush(self, *, mark: bool = True) -> None:
        """Write the buffered results, ``batch_size`` per transaction.

        With `mark`, first report the items started since (one attempt each). Both happen
        under one lock: an item's start is never reported after its result was written.
        """
        size = self._options.batch_size
        async with self._flushing:
            if mark:
                await self._mark_started()
            self._say_why_waiting()  # a wait just over is cleared before the last result
            if self._clear_step:
                # Before the results: the last of them may complete the job, whose step is
                # then no longer written.
                self._clear_step = False
                await self._store.set_progress(
                    self.job.id, inflight=sum(self._inflight.values()), step=self._step or ""
                )
            while self._buffer:
                batch, self._buffer = self._buffer[:size], self._buffer[size:]
                try:
                    self.settled += await self._store.record(self._worker.id, batch)
                except BaseException:
                    self._buffer[:0] = batch  # not written: keep it for the next flush
                    raise
                # Only a write says the store is back (a full disk still answers reads).
                self._outage.succeeded()
                self._error_logged = False
                self._written.set()

    async def _writer(self) -> None:
        """Write results as soon as the last write is done (group commit); never ends.

        An unreachable store is retried through the worker's `Outage`; any other failure is
        logged, and the write tried again after the same wait.
        """
        while True:
            await self._to_write.wait()
            self._to_write.clear()
            # Shielded: when the run ends, a write under way completes (and is counted)
            # rather than being cut off in the middle; `_finish` waits for it on the lock.
            self._write = asyncio.ensure_future(self.flush(mark=False))
            try:
                await asyncio.shield(self._write)
            except StoreUnavailable as exc:
                wait_s = self._outage.failed(exc, "writing results")
            except Exception as exc:
                self._log_error("writing results failed; retrying", exc)
                wait_s = self._options.flush_interval_s
            else:
                continue
            self._to_write.set()
            await asyncio.sleep(wait_s)

    async def _mark_started(self) -> None:
        """Report the items started since the last flush and still in flight (one attempt)."""
        if not self._unmarked:
            return
        marks = self._unmarked
        self._unmarked = set()
        self._marked |= marks
        job_id = self.job.id
        try:
            await self._store.started(self._worker.id, [(job_id, i) for i in sorted(marks)])
        except BaseException:
            # Not counted: those still in flight are reported again next flush. Those that
            # finished meanwhile took the mark as written (their results carry one attempt
            # less): their results get it back, or a result written before the next mark
            # would lose the attempt.
            finished = marks - self._marked
            self._marked -= marks
            self._unmarked |= marks - finished
            if finished:
                self._buffer = [
                    replace(r, attempts=r.attempts + 1)
                    if r.job_id == job_id and r.index in finished
                    else r
                    for r in self._buffer
                ]
            raise
        self._outage.succeeded()

    async def _heartbeat(self) -> None:
        o = self._options
        self._renewed_at = _clock.now()
        while True:
            await asyncio.sleep(o.flush_interval_s)
            try:
                # Stopping, a beat waits no longer than the grace period has left.
                async with asyncio.timeout(self._worker.stop_budget_s()):
                    if await self._beat():
                        return
            except TimeoutError:
                pass  # a silent store: `past_grace` below closes the run
            except StoreUnavailable as exc:
                # Logged once per outage; the next beat tries again. The run goes on: its
                # items in flight finish, and their results wait in the buffer.
                self._outage.failed(exc, "renewing its lease")
            except Exception as exc:
                # Anything else must not end the heartbeat either: the lease would lapse
                # under a live worker. Try again next beat.
                self._log_error("heartbeat failed; retrying", exc)
            if self._worker.past_grace():
                # The store stayed unreachable through the grace period: close anyway.
                self._close()
                return

    async def _beat(self) -> bool:
        """One heartbeat; True once the run has been told to close."""
        # The lease first: a write that keeps failing (a bug) must not let it lapse under a
        # live worker, whose items another worker would then run again.
        if not await self._renew():
            self._close()
            return True
        await self.flush()
        job = await self._store.get_job(self.job.id)
        if job is not None and job.status in {"cancelling", "cancelled", "failed"}:
            self._cancelling = True
            self._close()
            return True
        self._say_why_waiting()
        if self._progress_dirty:
            self._progress_dirty = False
            inflight = sum(self._inflight.values())
            await self._store.set_progress(self.job.id, inflight=inflight, step=self._step)
        if self._worker.stopping:
            if not self._handed_back:
                self._handed_back = True
                await self._hand_back_unstarted()
            if self._worker.past_grace():
                self._close()
                return True
        return False

    async def _renew(self, *, due: bool = False) -> bool:
        """Renew the lease when due (every ``lease_s / 3``, or now if `due`); False once lost."""
        if self._lost:
            return False
        o = self._options
        now = _clock.now()
        if not due and now - self._renewed_at < o.lease_s / 3:
            return True
        if not await self._store.renew(self._worker.id, lease_s=o.lease_s):
            self._lost = True
            return False
        self._outage.succeeded()  # a write went through (before `may_requeue`)
        self._renewed_at = now
        if self._worker.may_requeue(now):
            await self._store.requeue_expired()
        return True

    def _log_error(self, what: str, exc: Exception) -> None:
        """Log an unexpected failure with its traceback once; again only after a write works."""
        if self._error_logged:
            logger.debug("conveyor worker %s: %s: %r", self._worker.id, what, exc)
            return
        self._error_logged = True
        logger.error(
            "conveyor worker %s: %s (logged once until a write goes through)",
            self._worker.id,
            what,
            exc_info=exc,
        )

    async def _hand_back_unstarted(self) -> None:
        """On stop, give claimed items that never started back at once, for other workers."""
        unstarted = [(i.job_id, i.index) for i in self._queue]
        self._queue.clear()
        if self._budget is not None:  # an admission waiting for room gives its item back
            self._budget.wake()
        self._written.set()  # a claim waiting for room in the buffer sees the stop
        if unstarted:
            await self._store.release(self._worker.id, unstarted)

    def _say_why_waiting(self) -> None:
        """Publish, as the job's step, why its limiters admit nothing (Redis unreachable)."""
        reasons = [getattr(lim, "unavailable", None) for lim in self._limiters]
        reason = next((r for r in reasons if r), None)
        if reason == self._waiting:
            return
        if reason is None:
            self._end_wait()
            return
        self._step_before_wait = self._step if self._waiting is None else self._step_before_wait
        self._step = f"waiting: {reason}"
        self._waiting = reason
        self._progress_dirty = True

    def _end_wait(self) -> None:
        """The wait is over: its step goes, even when there was none before.

        Written as "" by the next write, before any result that could complete the job.
        """
        self._waiting, self._step = None, self._step_before_wait
        self._clear_step = self._progress_dirty = True
        self._to_write.set()

    def _close(self) -> None:
        if self._budget is not None:  # an admission waiting for room stops waiting
            self._budget.wake()
        self._written.set()  # so does a claim waiting for room in the buffer
        if self._stream is not None and self._closer is None:
            # Closing from this task while the run's consumer iterates: the consumer's loop
            # ends once every in-flight item has settled (as cancelled).
            self._closer = asyncio.get_running_loop().create_task(self._stream.aclose())

    # -- the run ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Run until the job has nothing left to claim, or a reason to stop; then checkpoint."""
        opts = self.job.options
        retry = Retry(attempts=opts.attempts, timeout_s=opts.timeout_s)
        if self._budget is not None:
            await self._outage.call(self._budget.load, doing="summing the spend", writes=False)
        self._stream = halting_stream(
            self._call,
            self._items(),
            halt_on=self._quota,
            concurrency=opts.concurrency,
            retry=retry,
            limiters=self._limiters,
            on_event=self._on_event,
            cost=self._cost_of(),
        )
        loop = asyncio.get_running_loop()
        heartbeat = loop.create_task(self._heartbeat())
        writer = loop.create_task(self._writer())
        try:
            async with self._stream as outcomes:
                async for _ in outcomes:
                    pass
        finally:
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)
            if self._closer is not None:
                await self._closer
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
            if self._write is not None:  # its failure, if any, was seen by the writer
                with contextlib.suppress(TimeoutError):  # stopping: no longer than the grace
                    async with asyncio.timeout(self._worker.stop_budget_s()):
                        await asyncio.gather(self._write, return_exceptions=True)
            await self._finish()

    def _cost_of(self) -> Callable[[ClaimedItem], Cost] | None:
        """The task's cost estimate of a claimed item (for token limiters), if any.

        A number of tokens, or units per dimension (the http task's: tokens, input, output).
        """
        estimate = self._task.cost
        if estimate is None:
            return None

        def cost(item: ClaimedItem) -> Cost:
            try:
                value = estimate(self._input(item))
                return value if isinstance(value, Mapping) else float(value)
            except Exception:  # an item the task refuses is failed by the task, not here
                return 0.0

        return cost

    def _input(self, item: ClaimedItem) -> Any:
        """`item`'s input for its next attempt, parsed once (`_call` takes it)."""
        value = self._read.get(item.index, _UNREAD)
        if value is _UNREAD:
            value = self._read[item.index] = json.loads(item.input_json)
        return value

    async def _finish(self) -> None:
        """Write what is left and give back what never ran; through an outage, however long.

        An unexpected failure is retried too. Only a worker told to stop gives up, once its
        grace period is over: the results not written are then lost from memory, and their
        items run again when the lease lapses.
        """
        if self._lost:
            return
        left = self._release + [(i.job_id, i.index) for i in self._queue]
        self._queue.clear()
        self._release = []

        async def finish() -> None:
            # The heartbeat has stopped: while this is retried, the lease is renewed here.
            if not await self._renew():
                return  # lost: another worker has the items
            if self._waiting is not None:  # a wait that outlived the run: its step goes
                self._end_wait()
            await self.flush()
            if left:
                await self._store.release(self._worker.id, left)
                left.clear()
            if self._progress_dirty and not self._inflight:
                self._progress_dirty = False
                await self._store.set_progress(self.job.id, inflight=0.0, step=self._step)

        why = await self._finish_through(finish)
        if why is not None:
            logger.warning(
                "conveyor worker %s: stopped with %d result(s) of job %s not written (%s);"
                " their items run again once the lease lapses",
                self._worker.id,
                len(self._buffer),
                self.job.id,
                why,
            )

    async def _finish_through(self, finish: Callable[[], Awaitable[None]]) -> str | None:
        """``await finish()`` until it is done, or past the grace period; why it was not."""
        while True:
            try:
                # Stopping, no longer than the grace period has left (a silent store).
                async with asyncio.timeout(self._worker.stop_budget_s()):
                    await self._outage.call(
                        finish, doing="writing results", give_up=self._worker.past_grace
                    )
            except StoreUnavailable:
                return "the store is unavailable"
            except TimeoutError as exc:
                # Known down from now on: the last calls after this one wait for nothing.
                self._outage.failed(StoreUnavailable("the job store", exc), "writing results")
                return "the store did not answer within the grace period"
            except Exception as exc:
                # As in the writer: an unexpected failure is retried, not raised out of the
                # worker with the results (their items would run again).
                self._log_error("writing results failed; retrying", exc)
                if self._worker.past_grace():
                    return "writing them failed"
                await asyncio.sleep(self._options.flush_interval_s)
                continue
            return None
