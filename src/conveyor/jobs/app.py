"""`App`: the tasks a worker can run, by name, and the shared limiters they go through.

>>> app = conveyor.App(limiters=[conveyor.Limiter("openai", requests_per_minute=500)])
>>> @app.task("analyze", limiters=["openai"])
... async def analyze(item, ctx):
...     ctx.progress(50, "Matching APIs...")
...     return {"answer": 42}
"""

from __future__ import annotations

import asyncio
import inspect
import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import ConfigError
from ..limits.limiter import Limiter
from .errors import InvalidJob

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping, Sequence

    from ..http.client import Transport
    from ..limits.costs import Cost
    from ..llm.cache import AnswerCache

__all__ = ["App", "Task", "TaskContext"]

F = TypeVar("F", bound="Callable[..., Any]")


class TaskContext:
    """What a task learns about the item it runs, and how it reports progress.

    Attributes:
        job_id: the job's id.
        index: the item's position in the job (0-based).
        attempt: attempts at this item before this run, on any worker (0 the first time).
        idempotency_key: ``"<job id>/<index>"``, the same on every attempt and every worker:
            pass it to APIs that deduplicate (``Idempotency-Key``), since an item that was in
            flight when its worker died runs again (at-least-once).
        tenant: whose job it is: anything a task keeps across jobs (a cache) is kept apart
            per tenant.
    """

    __slots__ = ("_report", "attempt", "idempotency_key", "index", "job_id", "tenant")

    def __init__(
        self,
        job_id: str,
        index: int,
        attempt: int,
        report: Callable[[int, float, str | None], None],
        *,
        tenant: str = "default",
    ) -> None:
        self.job_id = job_id
        self.index = index
        self.attempt = attempt
        self.idempotency_key = f"{job_id}/{index}"
        self.tenant = tenant
        self._report = report

    def progress(self, percent: float, step: str | None = None) -> None:
        """Report this item's progress (0-100) and, optionally, the current step's message.

        A job of one item reports its steps this way (discover 10, match 50, analyse 90);
        in a job of many, each item's share counts for ``1/total`` of the job's progress.
        """
        if not (isinstance(percent, int | float) and math.isfinite(percent)):
            msg = f"progress(percent={percent!r}): pass a number from 0 to 100"
            raise ConfigError(msg)
        self._report(self.index, min(100.0, max(0.0, float(percent))) / 100.0, step)


@dataclass(frozen=True, slots=True)
class Task:
    """A registered task: called once per item as ``fn(item)`` or ``fn(item, ctx)``."""

    name: str
    fn: Callable[..., Any]
    check: Callable[[Any], object] | None
    limiters: tuple[str, ...]
    takes_ctx: bool
    is_async: bool
    #: Estimates an item's cost for token limiters: tokens, or units per dimension (the http
    #: task's: its request's tokens, input and output tokens, `conveyor.limits.costs`).
    cost: Callable[[Any], Cost] | None = None
    #: For a spend budget (the http task's): an item -> (its model, the most it may cost in
    #: US dollars, None if the model has no price), and a result -> what it cost (or None).
    bound_usd: Callable[[Any], tuple[str | None, float | None]] | None = None
    spent_usd: Callable[[Any], float | None] | None = None
    #: With a response cache (the http task's): an item and its tenant -> the stored answer,
    #: the item's result, or None. Asked before the item takes a limiter slot.
    recall: Callable[[Any, str], Awaitable[Any]] | None = None

    async def call(self, item: Any, ctx: TaskContext) -> Any:
        """Run the task on one item (a plain function runs in a thread)."""
        args = (item, ctx) if self.takes_ctx else (item,)
        if self.is_async:
            return await self.fn(*args)
        return await asyncio.get_running_loop().run_in_executor(None, self.fn, *args)

    def check_item(self, index: int, item: Any) -> None:
        """Raise `InvalidJob` if the input check rejects the item."""
        if self.check is None:
            return
        try:
            ok = self.check(item)
        except Exception as exc:
            msg = f"item {index} fails the input check of task {self.name!r}: {exc}"
            raise InvalidJob(msg) from exc
        if ok is False:
            msg = f"item {index} fails the input check of task {self.name!r}"
            raise InvalidJob(msg)


def _positional_count(fn: Callable[..., Any]) -> int:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 1
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(1 for p in params if p.kind in kinds)


def _is_async(fn: object) -> bool:
    call = getattr(fn, "__call__", None)  # noqa: B004 - the method of a callable object
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(call)


class App:
    """The tasks and limiters of one application; give it to workers and to `Jobs`.

    Args:
        limiters: shared `Limiter`s, referred to by name from tasks and job options.
    """

    def __init__(self, *, limiters: Sequence[Limiter] = ()) -> None:
        self._tasks: dict[str, Task] = {}
        self._limiters: dict[str, Limiter] = {}
        self._closers: list[Callable[[], Awaitable[None]]] = []
        for limiter in limiters:
            self.add_limiter(limiter)

    def add_limiter(self, limiter: Limiter) -> Limiter:
        """Register a shared limiter under its name; return it."""
        if not isinstance(limiter, Limiter):
            msg = f"add_limiter({limiter!r}): pass a conveyor.Limiter"
            raise ConfigError(msg)
        if limiter.name in self._limiters:
            msg = f"a limiter named {limiter.name!r} is already registered: names are unique"
            raise ConfigError(msg)
        self._limiters[limiter.name] = limiter
        return limiter

    def task(
        self,
        name: str,
        *,
        check: Callable[[Any], object] | None = None,
        limiters: Sequence[str] = (),
        cost: Callable[[Any], float] | None = None,
    ) -> Callable[[F], F]:
        """Register the decorated function as task `name` (see `add_task`)."""

        def register(fn: F) -> F:
            self.add_task(name, fn, check=check, limiters=limiters, cost=cost)
            return fn

        return register

    def add_task(
        self,
        name: str,
        fn: Callable[..., Any],
        *,
        check: Callable[[Any], object] | None = None,
        limiters: Sequence[str] = (),
        cost: Callable[[Any], Cost] | None = None,
    ) -> Task:
        """Register `fn` as task `name`.

        Args:
            name: what jobs call the task by.
            fn: ``async def fn(item)`` or ``fn(item, ctx)`` with a `TaskContext`; a plain
                function runs in a thread. Its return value is stored, so it must be JSON.
            check: called with each item at submit; raising (or returning False) refuses the
                job, naming the item.
            limiters: names of registered limiters every attempt goes through.
            cost: a function item -> its estimated cost, needed with a token limiter: a
                number of tokens, or units per dimension (``{"input_tokens": ...,
                "output_tokens": max_tokens}``) for a limiter of input and output tokens.
        """
        if not isinstance(name, str) or not name:
            msg = f"task name {name!r}: give the task a non-empty name, e.g. 'analyze'"
            raise ConfigError(msg)
        if name in self._tasks:
            msg = f"a task named {name!r} is already registered: task names are unique"
            raise ConfigError(msg)
        if not callable(fn):
            msg = f"task {name!r}: {fn!r} is not callable; register a function of the item"
            raise ConfigError(msg)
        if check is not None and not callable(check):
            msg = f"task {name!r}: check={check!r} must be a function of one item"
            raise ConfigError(msg)
        if isinstance(limiters, str):
            msg = f'task {name!r}: limiters takes a list of names, e.g. limiters=["{limiters}"]'
            raise ConfigError(msg)
        task = Task(
            name,
            fn,
            check,
            tuple(limiters),
            takes_ctx=_positional_count(fn) >= 2,
            is_async=_is_async(fn),
            cost=cost,
        )
        self._tasks[name] = task
        return task

    def add_http_task(
        self,
        *,
        base_url: str,
        headers: Mapping[str, str] | None = None,
        name: str = "http",
        limiters: Sequence[str] = (),
        idempotency_header: str | None = None,
        transport: Transport | None = None,
        cache: AnswerCache | None = None,
    ) -> Task:
        """Register the built-in HTTP task: each item is a request line of ``conveyor run``.

        Items are ``{"custom_id", "method", "url", "body"}`` objects (the OpenAI Batch API's
        lines); urls must be under `base_url`, the only address the task calls. `headers`
        (credentials) live here, with the operator, never in the job's stored items. See
        `conveyor.jobs.http_task.HttpJobTask`. With a `cache` (`conveyor.llm.open_cache`),
        requests already answered there for the same tenant, through this task, are not sent
        again; answers are stored redacted.
        """
        from .http_task import HttpJobTask  # noqa: PLC0415 - the HTTP client only when used

        http = HttpJobTask(
            name=name,
            base_url=base_url,
            headers=headers or {},
            idempotency_header=idempotency_header,
            transport=transport,
            cache=cache,
        )
        self._closers.append(http.aclose)
        task = self.add_task(name, http, check=http.check, limiters=limiters, cost=http.cost)
        task = replace(
            task,
            bound_usd=http.bound_usd,
            spent_usd=http.spent_usd,
            recall=http.recall if cache is not None else None,
        )
        self._tasks[name] = task
        return task

    def get_task(self, name: str) -> Task | None:
        """The task registered as `name`, or ``None``."""
        return self._tasks.get(name)

    @property
    def task_names(self) -> list[str]:
        """The registered task names, sorted."""
        return sorted(self._tasks)

    @property
    def limiters(self) -> list[Limiter]:
        """The registered limiters, by name."""
        return [self._limiters[n] for n in sorted(self._limiters)]

    def limiter(self, name: str) -> Limiter | None:
        """The limiter registered as `name`, or ``None``."""
        return self._limiters.get(name)

    def resolve_limiters(self, names: Sequence[str]) -> tuple[Limiter, ...]:
        """The registered limiters named; `ConfigError` naming any unknown one."""
        missing = [n for n in names if n not in self._limiters]
        if missing:
            known = ", ".join(sorted(self._limiters)) or "none"
            msg = (
                f"unknown limiter(s) {', '.join(map(repr, missing))}: register them on the app"
                f" (App(limiters=[conveyor.Limiter(...)])); registered: {known}"
            )
            raise ConfigError(msg)
        return tuple(dict.fromkeys(self._limiters[n] for n in names))

    async def aclose(self) -> None:
        """Close what the tasks opened (the HTTP task's connection pool)."""
        for close in self._closers:
            await close()
