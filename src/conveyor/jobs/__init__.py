"""Durable jobs: submit work, run it in the background, follow it, cancel it, survive a crash.

>>> app = conveyor.App()
>>> @app.task("analyze")
... async def analyze(email, ctx): ...
>>> jobs = conveyor.Jobs("sqlite:///jobs.db", app=app)  # doctest: +SKIP
>>> job = await jobs.submit("analyze", emails, concurrency=20)  # doctest: +SKIP
>>> await Worker(jobs.store, app).run(until_idle=True)  # doctest: +SKIP

The parts: the model (`Job`, `JobItem`, `JobOptions`), the store interface (`Store`) and its
two stores (`MemoryStore`, `SqliteStore`), the app of tasks (`App`, `TaskContext`), the
worker (`Worker`, `WorkerOptions`, observed by `JobObserver`s: metrics, spans) and the client
(`Jobs`). How it works:
``docs/explanations/jobs.md``.
"""

from .app import App as App
from .app import Task as Task
from .app import TaskContext as TaskContext
from .client import Jobs as Jobs
from .client import open_store as open_store
from .errors import InvalidJob as InvalidJob
from .errors import JobError as JobError
from .errors import JobNotFound as JobNotFound
from .errors import JobStateError as JobStateError
from .errors import StoreError as StoreError
from .errors import StoreUnavailable as StoreUnavailable
from .errors import TooManyActiveJobs as TooManyActiveJobs
from .model import Counts as Counts
from .model import Job as Job
from .model import JobItem as JobItem
from .model import JobOptions as JobOptions
from .model import JobSummary as JobSummary
from .observe import JobObserver as JobObserver
from .store import Store as Store
from .stores.memory import MemoryStore as MemoryStore
from .stores.sqlite import SqliteStore as SqliteStore
from .worker import Worker as Worker
from .worker import WorkerOptions as WorkerOptions

__all__ = [
    "App",
    "Counts",
    "InvalidJob",
    "Job",
    "JobError",
    "JobItem",
    "JobNotFound",
    "JobObserver",
    "JobOptions",
    "JobStateError",
    "JobSummary",
    "Jobs",
    "MemoryStore",
    "SqliteStore",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "Task",
    "TaskContext",
    "TooManyActiveJobs",
    "Worker",
    "WorkerOptions",
    "open_store",
]
