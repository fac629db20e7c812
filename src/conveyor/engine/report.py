"""What a run gives back: one `Outcome` per item, a `Summary`, and the `Report` holding both."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

__all__ = ["CANCELLED", "FAILED", "SUCCEEDED", "Outcome", "Report", "State", "Summary"]

T = TypeVar("T")
R = TypeVar("R")

State = Literal["succeeded", "failed", "cancelled"]
SUCCEEDED: State = "succeeded"
FAILED: State = "failed"
CANCELLED: State = "cancelled"


class Outcome(Generic[T, R]):
    """How one item ended: exactly one per item, never changed afterwards.

    Attributes:
        index: the item's position in the input (0-based).
        item: the item itself.
        state: ``"succeeded"``, ``"failed"`` or ``"cancelled"``.
        value: what the function returned (``None`` unless succeeded).
        error: the exception of the last attempt (``None`` if succeeded; for a cancelled item,
            the error of an earlier attempt if it was waiting to retry).
        attempts: attempts started, the first included (0 if cancelled before starting).
        latency_s: duration of the last attempt.
        elapsed_s: from the first attempt's start to the end, backoff waits included.
    """

    # A plain slotted class rather than a dataclass: one is built per item, and this is the
    # cheapest object Python builds with named fields.
    __slots__ = ("attempts", "elapsed_s", "error", "index", "item", "latency_s", "state", "value")

    def __init__(
        self,
        index: int,
        item: T,
        state: State,
        value: R | None,
        error: BaseException | None,
        attempts: int,
        latency_s: float,
        elapsed_s: float,
    ) -> None:
        self.index = index
        self.item = item
        self.state: State = state
        self.value = value
        self.error = error
        self.attempts = attempts
        self.latency_s = latency_s
        self.elapsed_s = elapsed_s

    @property
    def ok(self) -> bool:
        """Whether the item succeeded."""
        return self.state == SUCCEEDED

    @property
    def error_type(self) -> str | None:
        """The error's class name (``"TimeoutError"``), or ``None``."""
        return type(self.error).__name__ if self.error is not None else None

    @property
    def error_message(self) -> str | None:
        """The error's message (``str(error)``, or the class name when that is empty)."""
        if self.error is None:
            return None
        return str(self.error) or type(self.error).__name__

    def unwrap(self) -> R:
        """Return the value, or raise the error (`RuntimeError` for a cancelled item)."""
        if self.state == SUCCEEDED:
            return self.value  # type: ignore[return-value]
        if self.state == FAILED and self.error is not None:
            raise self.error
        msg = f"item {self.index} was cancelled after {self.attempts} attempt(s)"
        raise RuntimeError(msg)

    def to_dict(self) -> dict[str, Any]:
        """Return the outcome's JSON-serialisable facts (item and value are left to you)."""
        return {
            "index": self.index,
            "state": self.state,
            "attempts": self.attempts,
            "latency_s": self.latency_s,
            "elapsed_s": self.elapsed_s,
            "error_type": self.error_type,
            "error_message": self.error_message,
        }

    def __repr__(self) -> str:
        detail = f"value={self.value!r}" if self.ok else f"error={self.error!r}"
        return (
            f"Outcome(index={self.index}, state={self.state!r}, {detail},"
            f" attempts={self.attempts}, latency_s={self.latency_s:.6f})"
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class Summary:
    """The numbers of a run. Latencies are per attempt; `to_dict()` is JSON-serialisable.

    Percentiles are exact up to 10,000 attempts and within 1% beyond (see `engine.stats`).
    """

    total: int
    succeeded: int
    failed: int
    cancelled: int
    retries: int
    duration_s: float
    latency_mean_s: float
    latency_p50_s: float
    latency_p95_s: float
    latency_p99_s: float
    latency_max_s: float
    throughput_per_s: float
    max_concurrency: int
    concurrency: int

    @classmethod
    def empty(cls, *, concurrency: int = 0) -> Summary:
        """The summary of a run with no items: every figure is zero but `concurrency`."""
        zeros: dict[str, Any] = {f.name: 0.0 if f.type == "float" else 0 for f in fields(cls)}
        return cls(**{**zeros, "concurrency": concurrency})

    def to_dict(self) -> dict[str, int | float]:
        """Return the summary as a plain dict."""
        return asdict(self)


class Report(Generic[T, R]):
    """Every item's `Outcome` in input order, and the run's `Summary`."""

    __slots__ = ("outcomes", "summary")

    def __init__(self, outcomes: Sequence[Outcome[T, R]], summary: Summary) -> None:
        self.outcomes = outcomes
        self.summary = summary

    def __len__(self) -> int:
        return len(self.outcomes)

    def __iter__(self) -> Iterator[Outcome[T, R]]:
        return iter(self.outcomes)

    @property
    def succeeded(self) -> list[Outcome[T, R]]:
        """The outcomes that succeeded, in input order."""
        return [o for o in self.outcomes if o.state == SUCCEEDED]

    @property
    def failed(self) -> list[Outcome[T, R]]:
        """The outcomes that failed, in input order."""
        return [o for o in self.outcomes if o.state == FAILED]

    @property
    def cancelled(self) -> list[Outcome[T, R]]:
        """The outcomes that were cancelled, in input order."""
        return [o for o in self.outcomes if o.state == CANCELLED]

    @property
    def values(self) -> list[R]:
        """The values of the items that succeeded, in input order."""
        return [o.value for o in self.outcomes if o.state == SUCCEEDED]  # type: ignore[misc]

    def raise_on_failure(self) -> None:
        """Raise an `ExceptionGroup` of every failed item's error, if any item failed."""
        errors = [o.error for o in self.outcomes if o.state == FAILED and o.error is not None]
        if errors:
            s = self.summary
            msg = f"{s.failed} of {s.total} item(s) failed"
            raise ExceptionGroup(msg, [e for e in errors if isinstance(e, Exception)])

    def __repr__(self) -> str:
        s = self.summary
        return (
            f"Report(total={s.total}, succeeded={s.succeeded}, failed={s.failed},"
            f" cancelled={s.cancelled}, duration_s={s.duration_s:.3f})"
        )
