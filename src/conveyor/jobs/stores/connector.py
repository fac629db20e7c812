"""What a job store needs of its database: the narrow interface every backend implements.

`conveyor.jobs.stores.manager.JobStore` is the one job store; it holds no SQL and no driver.
It runs the job rules (`conveyor.jobs.stores.rules`) through a `Connector`, which runs a piece
of work in one transaction (or, for reads, outside one) and hands it a `Connection`: named
queries (``sql/common/queries.sql``, with the dialect's own ``sql/<dialect>/queries.sql``) and
two bulk writes that each dialect does its fastest way. Backends:

- SQLite (`conveyor.jobs.stores.sqlite`): a file, a writer thread and a reader thread;
- memory (`conveyor.jobs.stores.memory`): SQLite in memory, run on the event loop;
- PostgreSQL (`conveyor.jobs.stores.postgres`): a pool of asyncpg connections, and
  ``LISTEN`` for notifications (which the other two do not have).

A SQLite connection never suspends: its work runs to its end in one step (`run_now`), on its
thread, so a transaction costs one hand-over to that thread whatever its number of queries.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, TypeVar

from .. import latency
from ..model import Counts, Job, JobItem, JobOptions

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable

    from ..model import ItemResult

__all__ = [
    "Connection",
    "Connector",
    "Row",
    "item_from_row",
    "job_from_row",
    "run_now",
    "step_now",
]

T = TypeVar("T")
#: A row of a query's result (a tuple, or a driver's record).
Row: TypeAlias = Sequence[Any]


class Connection(Protocol):
    """One transaction's (or one read's) statements: the dialect's named queries."""

    async def execute(self, name: str, /, **params: Any) -> int:
        """Run query `name`; how many rows it changed."""
        ...

    async def fetch(self, name: str, /, **params: Any) -> list[Row]:
        """Run query `name`; its rows."""
        ...

    async def fetchrow(self, name: str, /, **params: Any) -> Row | None:
        """Run query `name`; its first row, or None."""
        ...

    async def fetchval(self, name: str, /, **params: Any) -> Any:
        """Run query `name`; the first column of its first row (None without a row)."""
        ...

    async def insert_items(self, job_id: str, items: Iterable[str] | AsyncIterator[str]) -> int:
        """Insert the job's items (JSON text each, index 0, 1, ...); how many there were.

        An async iterator (a file's items, read on this connection) is closed when done.
        """
        ...

    async def record_items(
        self, job_id: str, worker: str, now: float | None, batch: Sequence[ItemResult]
    ) -> list[ItemResult]:
        """Write the results of `batch` (one job's) still running under `worker`.

        Returns the results written: the others were no longer the worker's (its lease
        lapsed), and are left as they are.
        """
        ...


if TYPE_CHECKING:
    #: What a schema upgrade may run in the transaction of its last migration (its ``then``):
    #: an import of what an earlier version kept elsewhere, written through the connection.
    Import: TypeAlias = Callable[[Connection], Awaitable[object]]


class Connector(Protocol):
    """Runs work on a backend's database: in one transaction, or as a read."""

    def now(self) -> float | None:
        """The time of a call, read once: Unix seconds, or None for the database's clock."""
        ...

    async def transaction(self, work: Callable[[Connection], Coroutine[Any, Any, T]]) -> T:
        """``await work(connection)`` in one transaction: committed, or rolled back whole."""
        ...

    async def read(self, work: Callable[[Connection], Coroutine[Any, Any, T]]) -> T:
        """``await work(connection)`` as a read: never waits behind a write."""
        ...

    async def close(self) -> None:
        """Release the connections (and threads)."""
        ...


def run_now(step: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends (a SQLite connection's work) to its end, now."""
    try:
        step.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    step.close()
    msg = "work on a SQLite connection awaited something else: it must not suspend"
    raise RuntimeError(msg)


def step_now(items: AsyncIterator[T]) -> Iterator[T]:
    """An async iterator that never suspends (one on a SQLite connection), as an iterator.

    It is closed when the iteration ends, is broken off or fails.
    """
    try:
        while True:
            try:
                yield run_now(anext(items))  # type: ignore[arg-type]
            except StopAsyncIteration:
                return
    finally:
        closing = getattr(items, "aclose", None)
        if closing is not None:
            run_now(closing())


def job_from_row(row: Row) -> Job:
    """A `Job` from a row of the ``get_job`` and ``list_jobs`` queries."""
    (id_, task, options, status, step, inflight, total, pending, running, succeeded, failed,
     cancelled, latency_s, created, started, finished, error, tenant, key, version,
     hist, request_hash) = row  # fmt: skip
    return Job(
        id=id_,
        task=task,
        options=JobOptions.from_json(options),
        status=status,
        counts=Counts(total, pending, running, succeeded, failed, cancelled),
        step=step,
        created_at=created,
        started_at=started,
        finished_at=finished,
        error=error,
        inflight=inflight,
        latency_total_s=latency_s,
        latency_hist=latency.loads(hist),
        tenant=tenant,
        idempotency_key=key,
        version=version,
        request_hash=request_hash,
    )


def item_from_row(job_id: str, row: Row) -> JobItem:
    """A `JobItem` from a row of the ``items_page`` queries."""
    idx, input_, state, attempts, result, etype, emsg, latency_s, started, finished = row
    return JobItem(
        job_id=job_id,
        index=idx,
        input=json.loads(input_),
        state=state,
        attempts=attempts,
        result=None if result is None else json.loads(result),
        error_type=etype,
        error_message=emsg,
        latency_s=latency_s,
        started_at=started,
        finished_at=finished,
    )
