"""`Batch`: run a `Plan` through the engine, one shared limiter, and write results as they settle.

How the parts meet:

- Items are read lazily from the input (`Plan.lines`) by ``conveyor.stream``, so memory is what
  is in flight. A line that cannot be sent is written as a failed result at once, without
  going through the limiter (it costs the API nothing).
- Every HTTP attempt, retries included, goes through one `conveyor.Limiter` (``limiters=``,
  ``cost=`` the token estimate): the engine takes its slot before the call and gives it back
  after, telling it the error, so a 429 or 503 with ``Retry-After`` pauses every request.
- Results are written from the engine's ``ItemFinished`` event, the moment each item settles,
  by this single writer. Items cancelled by `stop` are not written: they run again on resume.

With `conveyor.llm.LlmOptions` (``llm=``), the run also counts tokens and cost, checks each
answer, answers repeated requests from the response cache without sending them (written at
once, like invalid lines, never through the limiter), and keeps to a budget: the input stops
being read when the next request's most possible cost would pass it, so what was not started
stays pending for the next run. An answer that says the API's quota is exhausted stops the
run at once (`BatchResult.halted` says why); the requests it did not finish are not written,
so running again after adding credit resumes them.

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
import importlib.util
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING

from ..engine.api import stream
from ..engine.events import Event, ItemFinished, ItemRetrying, ItemStarted
from ..engine.report import CANCELLED, SUCCEEDED
from ..errors import QuotaExhausted, SourceError
from ..limits.budget import BudgetHolds, Refusal
from ..policy.llm_errors import api_error_fields, quota_exhausted
from .client import AiohttpTransport, HttpTask
from .errors import BatchError, OutputError
from .redact import Redactor
from .request import InvalidLine, Request
from .results import invalid_result, outcome_result, result_line
from .setup import (
    CONNECT_TIMEOUT_S,
    cost_function,
    open_session,
    refuse_a_check_that_cannot_pass,
    run_limiter,
    usage_policy,
)
from .tally import BatchTally

if TYPE_CHECKING:
    from collections.abc import Generator

    from ..engine.api import Stream
    from ..engine.report import Summary
    from ..llm.hooks import LlmOptions
    from ..policy.retry import Retry
    from .client import Transport
    from .config import BatchLimits
    from .plan import Plan
    from .response import Response

__all__ = ["Batch", "BatchResult"]


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class BatchResult:
    """How a run ended: `summary` counts invalid lines as failed; `interrupted`: by `stop`.

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
        transport: the HTTP I/O; default: one client for the run, pyreqwest's for paced limits
            when installed (`conveyor.http.reqwest`), else aiohttp's.
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
        self._holds = BudgetHolds()  # the budget held by requests in flight
        self._quota_stopped = 0  # failed items the engine counted, stopped by the quota
        #: Why the run stopped admitting early (budget, quota), or None.
        self.halted: str | None = None

    @property
    def redactor(self) -> Redactor:
        """What keeps the secrets out of text (for messages printed about this run)."""
        return self._redact

    def stop(self) -> None:
        """Stop the run: cancel what is in flight (not written, so it re-runs on resume)."""
        self._stopped = True
        self._holds.wake()  # an admission waiting for the budget stops waiting
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
        invalid = self.tally.invalid
        hits = self.tally.cache_hits
        # Requests stopped by an exhausted quota are not failures: they stay pending.
        stopped = self._quota_stopped
        settled = summary.succeeded + summary.failed - stopped + invalid + hits
        summary = dataclasses.replace(
            summary,
            total=summary.total + invalid + hits,
            succeeded=summary.succeeded + hits,
            failed=summary.failed - stopped + invalid,
            cancelled=summary.cancelled + stopped,
            throughput_per_s=settled / summary.duration_s if summary.duration_s else 0.0,
        )
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
        sync = self._cache is None and self.llm.max_cost_usd is None
        items = self._items() if sync else self._items_async()
        outcomes = stream(
            task,
            items,
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
                async for _ in outcomes:  # results are written by the event hook
                    pass
        except SourceError as exc:
            if isinstance(exc.__cause__, BatchError):
                raise exc.__cause__ from None
            raise
        finally:
            if not closing.done():
                closing.set_result(None)
            await closer
            # Closes the input file now, not when garbage collected.
            if isinstance(items, AsyncGenerator):
                await items.aclose()
            else:
                items.close()
        return outcomes.summary

    def _items(self) -> Generator[Request, None, None]:
        """The requests to send; invalid lines are written as failures on the way."""
        tally = self.tally
        for item in self.plan.lines():
            if self._stopped:
                return
            if isinstance(item, InvalidLine):
                tally.invalid += 1
                tally.failed += 1
                self._write(invalid_result(item))
                continue
            yield item

    async def _items_async(self) -> AsyncGenerator[Request, None]:
        """`_items` with the response cache and the budget, when either is on.

        A request answered by the cache is written, not sent; under a budget, a request
        starts once the most it may cost fits (`_admit`).
        """
        tally = self.tally
        for item in self.plan.lines():
            if self._stopped:
                return
            if isinstance(item, InvalidLine):
                tally.invalid += 1
                tally.failed += 1
                self._write(invalid_result(item))
                continue
            if self._cache is not None and await self._answer_from_cache(item):
                continue
            if self.llm.max_cost_usd is not None and not await self._admit(item):
                return
            yield item

    async def _answer_from_cache(self, request: Request) -> bool:
        """Write the cached answer of `request`, if there is one; return whether there was."""
        cache = self._hooks.cache
        assert cache is not None
        hit = await cache.recall(cache.key(request.method, request.url, request.body))
        if hit is None:
            return False
        self.tally.cache_hits += 1
        self.tally.succeeded += 1
        line = result_line(request.custom_id, response=hit, error=None, attempts=0, latency_s=None)
        self._write(line)
        return True

    async def _admit(self, request: Request) -> bool:
        """Hold the budget `request` may use, or wait for room (`conveyor.limits.budget`).

        False if it would pass the budget (`halted` then says why), or the run stopped.
        """
        why = await self._holds.admit(lambda: self._reserve(request), stopped=lambda: self._stopped)
        if why:
            self.halted = why
        return why is None

    def _reserve(self, request: Request) -> Refusal | None:
        """Hold the budget `request` may use: None, or why not and whether waiting can't help."""
        budget = self.llm.max_cost_usd
        assert budget is not None
        model, bound = request.model, self._prices.bound_usd(request.model, *request.most_tokens)
        if bound is None:
            why = (
                f"no price for the model {model!r} of {request.custom_id}: the budget"
                f" (--max-cost {budget:g}) cannot be kept; add the model to a price file"
                " (--prices FILE)"
            )
            return why, True
        spent = self.tally.cost_usd
        if spent + self._holds.held_usd + bound > budget:
            why = (
                f"the budget of ${budget:g} is reached: ${spent:.4f} spent, and the next"
                f" request ({request.custom_id}) may cost up to ${bound:.4f}; the requests not"
                " started stay pending: run again with a larger --max-cost to resume"
            )
            return why, False
        self._holds.hold(request.custom_id, bound)
        return None

    def _on_event(self, event: Event) -> None:
        # The engine logs a hook's exception with the event, whose answer could hold a secret
        # the API echoed: so nothing may escape from here.
        try:
            self._count_and_write(event)
        except Exception as exc:
            if self._error is None:
                text = self._redact(f"{type(exc).__name__}: {exc}")
                self._error = OutputError(f"writing a result failed: {text}")
                self.stop()

    def _count_and_write(self, event: Event) -> None:
        tally = self.tally
        if isinstance(event, ItemFinished):
            outcome = event.outcome
            self._waiting.discard(outcome.index)
            tally.retrying = len(self._waiting)
            self._holds.release(outcome.item.custom_id)
            error = outcome.error
            if outcome.state == CANCELLED:
                tally.cancelled += 1
                return
            if error is not None and self._quota(error):
                tally.cancelled += 1
                self._quota_stopped += 1
                return
            if outcome.state == SUCCEEDED:
                tally.succeeded += 1
            else:
                tally.failed += 1
            assert self._task is not None
            self._write(outcome_result(outcome, last_failure=self._task.last_failure))
        elif isinstance(event, ItemRetrying):
            self._waiting.add(event.index)
            tally.retrying = len(self._waiting)
        elif isinstance(event, ItemStarted) and event.attempt > 1:
            self._waiting.discard(event.index)
            tally.retrying = len(self._waiting)

    def _quota(self, error: BaseException) -> bool:
        """Stop the run if `error` says the quota is exhausted; return whether it did."""
        if not isinstance(error, QuotaExhausted):
            if not quota_exhausted(error):
                return False
            error = QuotaExhausted(self.limiter.name, api_error_fields(error)[2] or "")
        if self.halted is None:
            self.halted = self._redact(str(error)) if self._redact else str(error)
        self.stop()
        return True

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
    """The run's transport, closed with `stack`: pyreqwest's where it serves, else aiohttp's.

    A window dates its admissions when the headers go out; a bucket learns how late they go
    out (`conveyor.policy.lateness`): both need aiohttp's trace hooks. Paced limits need
    neither, and go through pyreqwest when it is installed (`conveyor.http.reqwest`).
    """
    shaped = limits.window_s is not None or limits.bucket_s is not None
    if not shaped and importlib.util.find_spec("pyreqwest") is not None:
        from .reqwest import ReqwestTransport, open_client  # noqa: PLC0415 - optional

        client = open_client(limits.concurrency, connect_timeout_s=CONNECT_TIMEOUT_S)
        return ReqwestTransport(await stack.enter_async_context(client))
    session = open_session(limits.concurrency, dated=shaped)
    stack.push_async_callback(session.close)
    return AiohttpTransport(session)


async def _close_when(closing: asyncio.Future[None], outcomes: Stream[Request, Response]) -> None:
    await closing
    await outcomes.aclose()
