"""The answers of the dashboard's views, for the OpenAPI document.

``/v1/jobs/{id}/series``, ``/v1/limiters`` and ``/v1/workers``: a web app that embeds the job
API reads them too.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from ..jobs.model import JobStatus  # noqa: TC001 - pydantic reads it at run time

__all__ = [
    "JobLimitOut",
    "LimiterOut",
    "LimiterRateOut",
    "LimitersOut",
    "SeriesOut",
    "ThisWorkerOut",
    "WorkerOut",
    "WorkersOut",
]


class JobLimitOut(BaseModel):
    """One rate a job's calls go through."""

    limiter: str
    unit: str = Field(description="requests, tokens, input_tokens, output_tokens...")
    per_second: float


class SeriesOut(BaseModel):
    """Items a job settled per second, and what is in flight now."""

    job_id: str
    status: JobStatus
    recorded: bool = Field(description="false where the store keeps no per-second counts")
    start_s: int = Field(description="the Unix second of the first point")
    bucket_s: int = Field(description="the seconds each point spans (more when the job is long)")
    per_s: list[float] = Field(description="items settled a second, one point a bucket")
    busiest_second: int
    limits: list[JobLimitOut]
    claimed: int = Field(description="items claimed by workers now")
    in_flight: int | None = Field(description="calls in flight in this process; null: no worker")


class LimiterRateOut(BaseModel):
    """One rate a limiter enforces."""

    unit: str
    limit: float
    period_s: float
    per_second: float


class AdoptedOut(BaseModel):
    """A limit adopted from what the API stated: ours before, and the API's."""

    ours: float
    theirs: float


class LimiterOut(BaseModel):
    """One shared limiter now (this process's part, for a limiter kept in Redis)."""

    name: str
    admitted: int
    in_flight: int
    waiting: int
    concurrency_limit: int | None
    limits: list[LimiterRateOut]
    utilisation: dict[str, float] = Field(description="per dimension: 0 idle, 1 at the limit")
    pushbacks: dict[str, int] = Field(description="429s and overloads answered, by kind")
    stated_remaining: dict[str, float]
    adopted: dict[str, AdoptedOut]
    halted: str | None = Field(description="why the limiter halted (a quota), or null")
    paused: bool = Field(description="a Retry-After pause is running")
    series: list[list[float]] = Field(
        description="points [start, end, admitted a second, pushbacks] over the last minutes"
    )


class LimitersOut(BaseModel):
    """The shared limiters."""

    object: Literal["list"]
    now: float
    data: list[LimiterOut]


class WorkerOut(BaseModel):
    """A worker the store knows, by its lease."""

    id: str
    alive: bool
    lease_until: float
    renewed_at: float | None
    running_items: int
    jobs: dict[str, int] = Field(description="the caller's jobs it runs items of, and how many")
    in_this_process: bool


class ThisWorkerOut(BaseModel):
    """This process's own worker."""

    id: str
    alive: bool
    restarts: int
    last_error: str | None
    settled: int
    store_down: bool
    store_outages: int
    lease_s: float | None
    tasks: list[str]


class WorkersOut(BaseModel):
    """The workers the store knows, and this process's own."""

    now: float
    recorded: bool
    data: list[WorkerOut]
    this_process: ThisWorkerOut | None
