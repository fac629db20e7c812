"""Conveyor: run many API calls as fast as the APIs allow and never faster; settle every item.

>>> report = await conveyor.map(release, ids, concurrency=50)  # doctest: +SKIP
>>> report.summary.failed, [o.error for o in report.failed]  # doctest: +SKIP
"""

from ._version import __version__ as __version__
from .engine.api import Stream as Stream
from .engine.api import map as map  # noqa: A004 - `conveyor.map` is the name users expect
from .engine.api import run_sync as run_sync
from .engine.api import stream as stream
from .engine.context import attempt_slot as attempt_slot
from .engine.events import Event as Event
from .engine.events import ItemFinished as ItemFinished
from .engine.events import ItemRetrying as ItemRetrying
from .engine.events import ItemStarted as ItemStarted
from .engine.events import RunFinished as RunFinished
from .engine.report import Outcome as Outcome
from .engine.report import Report as Report
from .engine.report import Summary as Summary
from .errors import AttemptTimeout as AttemptTimeout
from .errors import CircuitOpen as CircuitOpen
from .errors import ConfigError as ConfigError
from .errors import ConveyorError as ConveyorError
from .errors import DeadlineExceeded as DeadlineExceeded
from .errors import Interrupted as Interrupted
from .errors import InvalidAnswer as InvalidAnswer
from .errors import QuotaExhausted as QuotaExhausted
from .errors import RetryAfter as RetryAfter
from .errors import SourceError as SourceError
from .jobs.app import App as App
from .jobs.app import TaskContext as TaskContext
from .jobs.client import Jobs as Jobs
from .jobs.model import Job as Job
from .jobs.model import JobOptions as JobOptions
from .jobs.worker import Worker as Worker
from .limits.limiter import Limiter as Limiter
from .limits.limiter import Slot as Slot
from .limits.spec import LimiterConfig as LimiterConfig
from .policy.breaker import CircuitBreaker as CircuitBreaker
from .policy.classify import Classifier as Classifier
from .policy.classify import rule_for as rule_for
from .policy.rates import Rate as Rate
from .policy.retry import Retry as Retry
from .policy.retry import is_transient as is_transient
from .policy.verdict import Verdict as Verdict

__all__ = [
    "App",
    "AttemptTimeout",
    "CircuitBreaker",
    "CircuitOpen",
    "Classifier",
    "ConfigError",
    "ConveyorError",
    "DeadlineExceeded",
    "Event",
    "Interrupted",
    "InvalidAnswer",
    "ItemFinished",
    "ItemRetrying",
    "ItemStarted",
    "Job",
    "JobOptions",
    "Jobs",
    "Limiter",
    "LimiterConfig",
    "Outcome",
    "QuotaExhausted",
    "Rate",
    "Report",
    "Retry",
    "RetryAfter",
    "RunFinished",
    "Slot",
    "SourceError",
    "Stream",
    "Summary",
    "TaskContext",
    "Verdict",
    "Worker",
    "attempt_slot",
    "is_transient",
    "map",
    "rule_for",
    "run_sync",
    "stream",
]
