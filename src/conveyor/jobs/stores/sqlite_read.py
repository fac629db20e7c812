"""The SQLite store's read side: rows into values, and the reader thread's queries."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from .. import latency
from ..errors import JobNotFound
from ..model import Counts, Job, JobItem, JobOptions
from .sqlite_schema import queries

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Sequence

__all__ = ["Reader", "item_from_row", "job_from_row"]

Q = queries()


def job_from_row(row: Sequence[Any]) -> Job:
    """A `Job` from a row of the ``get_job`` query."""
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


def item_from_row(job_id: str, row: Sequence[Any]) -> JobItem:
    """A `JobItem` from a row of the ``items_page`` queries."""
    idx, input_, state, attempts, result, etype, emsg, latency, started, finished = row
    return JobItem(
        job_id=job_id,
        index=idx,
        input=json.loads(input_),
        state=state,
        attempts=attempts,
        result=None if result is None else json.loads(result),
        error_type=etype,
        error_message=emsg,
        latency_s=latency,
        started_at=started,
        finished_at=finished,
    )


class Reader:
    """The read side: plain synchronous methods, run only on the reader thread."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def get_job(self, job_id: str) -> Job | None:
        """The job, or None."""
        row = self.conn.execute(Q["get_job"], {"id": job_id}).fetchone()
        return None if row is None else job_from_row(row)

    def list_jobs(self, filters: dict[str, Any]) -> list[Job]:
        """Newest first; `filters` are the ``list_jobs`` query's parameters."""
        return [job_from_row(r) for r in self.conn.execute(Q["list_jobs"], filters).fetchall()]

    def items(self, job_id: str, state: str | None, after: int, limit: int) -> list[JobItem]:
        """A page of items in index order."""
        if self.get_job(job_id) is None:
            raise JobNotFound(job_id)
        params: dict[str, Any] = {"job": job_id, "after": after, "limit": limit}
        if state is None:
            rows = self.conn.execute(Q["items_page"], params).fetchall()
        else:
            params["state"] = state
            rows = self.conn.execute(Q["items_page_by_state"], params).fetchall()
        return [item_from_row(job_id, r) for r in rows]
