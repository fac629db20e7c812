"""Jobs and items as the API shows them (plain dicts; their schemas are in ``schemas.py``)."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from ..jobs.model import step_text
from ..policy.rates import period_s

if TYPE_CHECKING:
    from ..jobs.app import App
    from ..jobs.model import Job, JobItem

__all__ = ["item_view", "job_view", "limits_of"]


def limits_of(app: App, job: Job) -> list[dict[str, Any]]:
    """The rate limits the job's calls go through: its task's limiters and its own."""
    task = app.get_task(job.task)
    names = (*(task.limiters if task else ()), *job.options.limiters)
    out: list[dict[str, Any]] = []
    for name in dict.fromkeys(names):
        limiter = app.limiter(name)
        if limiter is None:
            continue
        out.extend(
            {"limiter": name, "unit": rate.unit, "per_second": rate.limit / period_s(rate.per)}
            for rate in limiter.rates
        )
    return out


def job_view(
    job: Job, app: App, spend: dict[str, Any] | None = None, *, root: str = ""
) -> dict[str, Any]:
    """The job as ``GET /v1/jobs/{id}`` shows it; `spend`: an LLM job's tokens and cost.

    `root`: the path the service is mounted at (``/jobs``), which every link starts with.
    """
    base = f"{root}/v1/jobs/{job.id}"
    c = job.counts
    return {
        "id": job.id,
        "task": job.task,
        "status": job.status,
        "progress": round(job.progress, 2),
        "step": step_text(job),
        "counts": {
            "total": c.total,
            "pending": c.pending,
            "running": c.running,
            "succeeded": c.succeeded,
            "failed": c.failed,
            "cancelled": c.cancelled,
        },
        "summary": job.summary.to_dict() | (spend or {}),
        "options": {**asdict(job.options), "limiters": list(job.options.limiters)},
        "limits": limits_of(app, job),
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "error": job.error,
        "idempotency_key": job.idempotency_key,
        "version": job.version,
        "links": {
            "self": base,
            "events": f"{base}/events",
            "results": f"{base}/results",
            "cancel": f"{base}/cancel",
            "retry": f"{base}/retry",
            "stream_token": f"{base}/stream-token",
        },
    }


def item_view(item: JobItem) -> dict[str, Any]:
    """One item as the results endpoint shows it."""
    return item.to_dict()
