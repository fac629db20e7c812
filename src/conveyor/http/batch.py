"""`Batch`: run a `Plan` through the engine, one shared limiter, and write results as they settle.

How the parts meet:

- Items are read lazily from the input (`Plan.lines`) by the engine's stream, so memory is
  what is in flight. A line that cannot be sent is handed to the engine already settled, as
  failed (`conveyor.engine.settled.Settled`): it takes no limiter slot, and costs the API
  nothing.
- Every HTTP attempt, retries included, goes through one `conveyor.Limiter` (``limiters=``,
  ``cost=`` the token estimate): the engine takes its slot before the call and gives it back
  after, telling it the error, so a 429 or 503 with ``Retry-After`` pauses every request.
- Every outcome comes out of the stream, and the loop that reads it is the one writer of
  results and of the settled counts; the run's summary is the engine's own. Items cancelled
  by `stop` are not written: they run again on resume. The engine's events only keep the
  count of requests waiting for a retry, for the progress display.

With `conveyor.llm.LlmOptions` (``llm=``), the run also counts tokens and cost, checks each
answer, answers repeated requests from the response cache without sending them (handed to the
engine settled, like invalid lines, never through the limiter), and keeps to a budget
(`conveyor.limits.budget.SpendBudget`): the input stops being read when the next request's
most possible cost would pass it, so what was not started stays pending for the next run. An
answer that says the API's quota is exhausted (`conveyor.limits.quota.quota_halt`) halts the
run at once (`BatchResult.halted` says why): the engine settles it as cancelled, not failed,
and the requests the run did not finish are not written, so running again after adding credit
resumes them.

Every answer's rate-limit headers reach the limiter, successes' included. It keeps to what
the server says only where its own limits do not already cover it (see
`Limiter.observe_headers`): with ``--rpm`` / ``--tpm`` at or below the server's stated limits,
the limiter's exact pacing stands and the headers change nothing (reading them anyway, with a
strict sliding window's "0 left, full again in 1 s", cost 11-15% of the throughput).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any

from ..engine.api import halting_stream
from ..engine.events import Event, ItemFinished, ItemRetrying, ItemStarted
from ..engine.report import CANCELLED, SUCCEEDED
from ..engine.settled import Settled
from ..errors import SourceError
from ..limits.budget import SpendBudget
from ..limits.quota import quota_halt
from .client import HttpTask
from .errors import BatchError, OutputError
from .redact import Redactor
from .request import InvalidLine, Request
from .results import invalid_result, outcome_result
from .setup import (
    CONNECT_TIMEOUT_S,
    cost_function,
    refuse_a_check_that_cannot_pass,
    run_limiter,
    usage_policy,
)
from .tally import BatchTally

if TYPE_CHECKING:
    from collections.abc import Generator

    from ..engine.api import Stream
    from ..engine.report import Outcome, Summary
    from ..llm.hooks import LlmOptions
    from ..policy.retry import Retry
    from .client import Transport
    from .config import BatchLimits
    from .plan import Plan
    from .response import Response

__all__ = ["Batch", "BatchResult"]


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class BatchResult:
    """How a run ended: the engine's `summary`; `interrupted`: by `stop`.

    The summary counts invalid lines as failed, cache hits as succeeded, and the requests an
    exhausted quota stopped as cancelled.

    `halted` says why the run stopped admitting before the end of the input (the budget, an
    exhausted quota, a model with no price under a budget); None when it did not.
    """

    summary: Summary
    tally: BatchTally
    interrupted: bool
    halted: str | None = None


class Batch:
    """One run of a `Plan`. ``await batch.run()``; `stop()` (from a signal handler) ends it.

    Args:
        plan: what to run (from `prepare`); the batch writes to its results file.
        limits: concurrency and the API's limits.
        retry: the retry policy (attempts, timeout).
        transport: the HTTP I/O; default: the run's own HTTP/1.1 transport
            (`conveyor.http.http1.Http1Transport`), a third of aiohttp's CPU per request.
        llm: answer checks, response cache, prices and budget (`conveyor.llm.LlmOptions`).
    """

    def __init__(
        self,
        plan: Plan,
        *,
        limits: BatchLimits,
        retry: Retry,
        transport: Transport | None = None,
        llm: LlmOptions | None = None,
    ) -> None:
        self.plan = plan
        self.limits = limits
        self.retry = retry
        self.tally = BatchTally(total=plan.to_run, skipped=plan.already_done)
        self.limiter = run_limiter(limits)
        self._transport = transport
        self._redact = Redactor(plan.endpoint.secrets())
        self._task: HttpTask | None = None
        self._waiting: set[int] = set()  # items waiting to be retried
        self._closing: asyncio.Future[None] | None = None
        self._stopped = False
        self._error: BatchError | None = None
        # conveyor.llm imports this package (the request format): imported when used.
        from ..llm.cache import open_cache  # noqa: PLC0415
        from ..llm.hooks import AnswerHooks, LlmOptions  # noqa: PLC0415

        self.llm = llm or LlmOptions()
        refuse_a_check_that_cannot_pass(self.llm, plan)
        self._prices = self.llm.price_table()
        self._cache = open_cache(self.llm.cache) if self.llm.cache is not None else None
        self._hooks = AnswerHooks(
            tally=self.tally,
            prices=self._prices,
            validate=self.llm.validate,
            cache=self._cache,
            scope=plan.endpoint.base_url or "",
            redact=self._redact,
            secret_headers=[name for name, _ in plan.endpoint.secret_headers],
        )
        budget = self.llm.max_cost_usd
        self._budget = (
            None
            if budget is None
            else SpendBudget(
                budget,
                spent_usd=lambda: self.tally.cost_usd,
                option="--max-cost",
                items="requests",
                resume=": run again with a larger --max-cost to resume",
                no_price_fix="; add the model to a price file (--prices FILE)",
            )
        )
        #: Why the run stopped admitting early (budget, quota), or None.
        self.halted: str | None = None

    @property
    def redactor(self) -> Redactor:
        """What keeps the secrets out of text (for messages printed about this run)."""
        return self._redact

    def stop(self) -> None:
        """Stop the run: cancel what is in flight (not written, so it re-runs on resume)."""
        self._stopped = True
        if self._budget is not None:
            self._budget.wake()  # an admission waiting for the budget stops waiting
        if self._closing is not None and not self._closing.done():
            self._closing.set_result(None)

    async def run(self) -> BatchResult:
        """Send every request of the plan; return when all settled or the run was stopped.

        Raises `OutputError` if writing a result fails (the results so far are kept).
        """
        self._closing = asyncio.get_running_loop().create_future()
        if self._stopped:
            self._closing.set_result(None)
        async with contextlib.AsyncExitStack() as stack:
            transport = self._transport or await _open_transport(self.limits, stack)
            if self._cache is not None:
                stack.push_async_callback(self._cache.aclose)
                await self._cache.check()  # an unreachable Redis stops the run before it starts
            summary = await self._run(transport)
        if self._error is not None:
            raise self._error
        if self.halted is not None:
            tally = self.tally
            tally.not_started = max((tally.total or 0) - tally.done - tally.cancelled, 0)
        return BatchResult(
            summary=summary,
            tally=self.tally,
            interrupted=self._stopped and self.halted is None,
            halted=self.halted,
        )

    async def _run(self, transport: Transport) -> Summary:
        task = self._task = HttpTask(
            transport,
            headers=self.plan.endpoint.all_headers(),
            limiter=self.limiter,
            observe=True,
            tally=self.tally,
            usage=usage_policy(self.limits, self.limiter),
            redact=self._redact or None,
            hooks=self._hooks,
        )
        sync = self._cache is None and self._budget is None
        items = self._items() if sync else self._items_async()
        outcomes = halting_stream(
            task,
            items,
            halt_on=self._quota,
            concurrency=self.limits.concurrency,
            retry=self.retry,
            on_event=self._on_event,
            limiters=[self.limiter],
            cost=cost_function(self.limits),
        )
        assert self._closing is not None
        closing = self._closing
        # `stop` may come from a signal handler: it closes the stream from its own task (the
        # engine's "cancel button"), which ends the loop below.
        closer = asyncio.ensure_future(_close_when(closing, outcomes))
        try:
            async with outcomes:
                async for outcome in outcomes:
                    self._settled(outcome)
        except SourceError as exc:
            if isinstance(exc.__cause__, BatchError):
                raise exc.__cause__ from None
            raise
        finally:
            if not closing.done():
                closing.set_result(None)
            await closer
            # What settled after the loop ended (closed by `stop`): counted, and written.
            for outcome in outcomes.drain():
                self._settled(outcome)
            self._flush()
            # Closes the input file now, not when garbage collected.
            if isinstance(items, AsyncGenerator):
                await items.aclose()
            else:
                items.close()
        return outcomes.summary

    def _items(self) -> Generator[Request | Settled[InvalidLine, Response], None, None]:
        """The requests to send; a line that is none comes settled, as failed."""
        for item in self.plan.lines():
            if self._stopped:
                return
            if isinstance(item, InvalidLine):
                yield Settled(item, error=ValueError(item.message))
                continue
            yield item

    async def _items_async(
        self,
    ) -> AsyncGenerator[Request | Settled[Any, Response], None]:
        """`_items` with the response cache and the budget, when either is on.

        A request answered by the cache comes settled, as succeeded, with no slot taken;
        under a budget, a request starts once the most it may cost fits (`_admit`).
        """
        cache = self._hooks.cache
        with contextlib.closing(self._items()) as items:
            for item in items:
                if isinstance(item, Settled):
                    yield item
                    continue
                if cache is not None:
                    hit = await cache.recall_request(item)
                    if hit is not None:
                        yield Settled(item, hit)
                        continue
                if self._budget is not None and not await self._admit(item):
                    return
                yield item

    async def _admit(self, request: Request) -> bool:
        """Hold the budget `request` may use, or wait for room (`SpendBudget`).

        False if it would pass the budget (`halted` then says why), or the run stopped.
        """
        assert self._budget is not None
        model = request.model
        bound = self._prices.bound_usd(model, *request.most_tokens)
        who = f"request {request.custom_id}"
        why = await self._budget.admit(
            request.custom_id, who, model, bound, stopped=lambda: self._stopped
        )
        if why:
            self.halted = why
        return why is None

    def _settled(self, outcome: Outcome[Any, Response]) -> None:
        """Count and write one settled item: the run's one writer of results.

        Nothing may escape from here: an error's text could hold a secret the API echoed.
        """
        try:
            self._count_and_write(outcome)
        except Exception as exc:
            if self._error is None:
                text = self._redact(f"{type(exc).__name__}: {exc}")
                self._error = OutputError(f"writing a result failed: {text}")
                self.stop()

    def _count_and_write(self, outcome: Outcome[Any, Response]) -> None:
        tally = self.tally
        item = outcome.item
        if self._budget is not None:
            self._budget.release(item.custom_id)
        if outcome.state == CANCELLED:
            tally.cancelled += 1  # not written: it runs again on resume
            return
        if isinstance(item, InvalidLine):
            tally.invalid += 1
            tally.failed += 1
            self._write(invalid_result(item))
            return
        if outcome.state == SUCCEEDED:
            tally.succeeded += 1
            if not outcome.attempts:
                tally.cache_hits += 1  # answered by the cache: never sent
        else:
            tally.failed += 1
        assert self._task is not None
        self._write(outcome_result(outcome, last_failure=self._task.last_failure))

    def _on_event(self, event: Event) -> None:
        """Keep the count of requests waiting for a retry, for the progress display."""
        if isinstance(event, ItemFinished):
            self._waiting.discard(event.outcome.index)
        elif isinstance(event, ItemRetrying):
            self._waiting.add(event.index)
        elif isinstance(event, ItemStarted) and event.attempt > 1:
            self._waiting.discard(event.index)
        else:
            return
        self.tally.retrying = len(self._waiting)

    def _quota(self, error: BaseException) -> bool:
        """Halt the run if `error` says the quota is exhausted; return whether it did.

        The engine then settles the item as cancelled, and reads no more items.
        """
        halted = quota_halt(error, [self.limiter], classifier=self.retry.classifier)
        if halted is None:
            return False
        if self.halted is None:
            self.halted = self._redact(str(halted)) if self._redact else str(halted)
        self.stop()
        return True

    def _flush(self) -> None:
        """Write the results still waiting for the end of the loop's pass, before `run` returns.

        A failure there, or one at the end of an earlier pass that no later write heard of, is
        the run's `OutputError`, as any other write's.
        """
        if self._error is not None:
            return
        try:
            self.plan.results.flush()
        except OutputError as exc:
            self._error = exc

    def _write(self, line: str) -> None:
        if self._error is not None:
            return  # writing already failed: what settles now re-runs on resume
        if self._redact:
            line = self._redact(line)
        try:
            self.plan.results.write(line)
        except OutputError as exc:
            self._error = exc
            self.stop()


async def _open_transport(limits: BatchLimits, stack: contextlib.AsyncExitStack) -> Transport:
    """The run's transport, closed with `stack`: HTTP/1.1 on asyncio's transports (`.http1`).

    It costs a third of aiohttp's CPU per request, with no added latency (`bench/clients.py`,
    `bench/http.py`, docs/decisions.md). A window dates its admissions when the request goes
    out, and a bucket learns how late requests go out (`conveyor.policy.lateness`): with
    either, the transport dates them.
    """
    from .http1 import Http1Transport  # noqa: PLC0415 - the runner's only

    shaped = limits.window_s is not None or limits.bucket_s is not None
    transport = Http1Transport(connect_timeout_s=CONNECT_TIMEOUT_S, dated=shaped)
    stack.push_async_callback(transport.close)
    return transport


async def _close_when(closing: asyncio.Future[None], outcomes: Stream[Any, Response]) -> None:
    await closing
    await outcomes.aclose()
