"""The errors of durable jobs, all under `conveyor.ConveyorError`.

The tree::

    ConveyorError
    └── JobError                  anything about jobs and their store
        ├── InvalidJob            a submit refused: unknown task, bad or oversized item, empty job
        │                         (also a ConfigError and so a ValueError); nothing was written
        ├── JobNotFound           no job with that id (also a LookupError)
        ├── JobStateError         the job is not in a state that allows the call (retry a
        │                         cancelled job, ...)
        ├── TooManyActiveJobs     a submit refused: its tenant has the most active jobs it may
        │                         have; nothing was written
        ├── StoreError            the store cannot be used: not a Conveyor database, a schema
        │                         newer than this Conveyor, a bad store URL; nothing was written
        └── StoreUnavailable      the store cannot be reached now (connection refused or lost,
                                  no answer in time, disk full, file locked): the call did
                                  not happen, or not wholly; try again later

Failed *items* are never raised: they are settled, with their error, in the store.
"""

from __future__ import annotations

from ..errors import ConfigError, ConveyorError

__all__ = [
    "InvalidJob",
    "JobError",
    "JobNotFound",
    "JobStateError",
    "StoreError",
    "StoreUnavailable",
    "TooManyActiveJobs",
]


class JobError(ConveyorError):
    """The root of the job errors."""


class InvalidJob(JobError, ConfigError):
    """A job was refused at submit; the message names the item or argument and the fix."""


class JobNotFound(JobError, LookupError):
    """No job has this id in the store."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(f"no job {job_id!r} in this store: check the id (`conveyor jobs ls`)")


class JobStateError(JobError):
    """The call does not fit the job's status (the message says which status and why)."""


class TooManyActiveJobs(JobError):
    """A new job was refused: its tenant already has `limit` (or more) active jobs.

    Active means queued, running or being cancelled. Raised by the store in the transaction
    that would have created the job, so creates racing each other never pass the limit.
    """

    def __init__(self, tenant: str, active: int, limit: int) -> None:
        self.tenant = tenant
        self.active = active
        self.limit = limit
        super().__init__(
            f"tenant {tenant!r} has {active} active jobs (queued, running or cancelling), the"
            f" most allowed (max_active_jobs={limit}): wait for one to finish, or cancel one"
        )


class StoreError(JobError):
    """The store cannot be opened or used as a Conveyor store; nothing was written to it."""


class StoreUnavailable(JobError):
    """The store cannot be reached now; the call may be made again once it is back.

    A worker keeps what it has not written and retries (`conveyor.jobs.outage`); the service
    answers 503; the command line prints the message. `where` names the store (no password),
    `cause` says what failed, in one line.
    """

    def __init__(self, where: str, cause: BaseException) -> None:
        self.where = where
        text = " ".join(str(cause).split()) or type(cause).__name__
        if len(text) > 300:
            text = text[:297] + "..."
        self.cause = text
        super().__init__(
            f"the job store {where} is unavailable ({text}): check that it is running, reachable"
            " and has room, then try again"
        )
