"""What the mock API counts, and the snapshot `GET /stats` and `MockAPI.stats()` report."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

__all__ = ["COUNTS", "Counters", "MockStats", "SuccessLog"]


@dataclass(frozen=True, kw_only=True, slots=True)
class MockStats:
    """The mock API's counters at one moment (API requests only; ``/stats`` is not counted).

    Attributes:
        requests: API requests received.
        ok: answered 200.
        rate_limited: answered 429 (over a rate limit or the spend cap), on every route.
        bad_requests: answered 400 (bad JSON or parameters, or a cost that can never fit).
        errors_500: answered 500 by the fault draw.
        hung: held without an answer by the fault draw.
        dropped: connection closed without an answer by the fault draw.
        in_flight: requests received and not yet answered (hung ones included).
        peak_in_flight: the most requests in flight at once.
        duplicates_after_success: requests whose ``x-request-id`` or ``Idempotency-Key`` had
            already been answered 200: work a client did twice.
        tokens_admitted: tokens charged for admitted requests on the OpenAI routes (the
            window's cost: chat and echo).
        overloaded: answered 529 ``overloaded_error`` (the Messages route's draw).
        chat_admitted, echo_admitted, messages_admitted: admitted by the route's rate limit
            (whatever the answer then was: 200, 500, 529, hung or dropped).
        chat_rate_limited, echo_rate_limited, messages_rate_limited: the route's 429s
            (`rate_limited` is their sum); the Messages route's include the spend cap's.
        messages_spend_limited: the Messages route's 429s for the spend cap.
        messages_input_tokens: input tokens the Messages route's buckets took, on admission.
        messages_output_tokens: output tokens the Messages route's buckets took, as answers
            were produced.
        spent_tokens: input plus output tokens of the Messages route's 200 answers: what the
            spend cap counts.
        active_s: seconds from the first API request received to the last one answered (0
            before any answer): the span a benchmark measures "from the first request to the
            last answer", the same way for every client.
    """

    requests: int = 0
    ok: int = 0
    rate_limited: int = 0
    bad_requests: int = 0
    errors_500: int = 0
    hung: int = 0
    dropped: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0
    duplicates_after_success: int = 0
    tokens_admitted: int = 0
    overloaded: int = 0
    chat_admitted: int = 0
    chat_rate_limited: int = 0
    echo_admitted: int = 0
    echo_rate_limited: int = 0
    messages_admitted: int = 0
    messages_rate_limited: int = 0
    messages_spend_limited: int = 0
    messages_input_tokens: int = 0
    messages_output_tokens: int = 0
    spent_tokens: int = 0
    active_s: float = 0.0

    def as_dict(self) -> dict[str, float]:
        """Return the counters as a JSON-ready dict."""
        return dataclasses.asdict(self)


#: The counts `Counters` keeps: every field of `MockStats` but the span, which it derives.
COUNTS = tuple(f.name for f in dataclasses.fields(MockStats) if f.name != "active_s")


class Counters:
    """The live, mutable counters the server updates.

    Its slots are `MockStats`' counts (that class holds the one list of them), plus the loop
    times the span comes from: a count `MockStats` does not name cannot be kept here.
    """

    __slots__ = (*COUNTS, "first_at", "last_at")

    in_flight: int  # the two counts this class assigns itself, so the type checker knows them
    peak_in_flight: int
    first_at: float | None  # loop time of the first request since the reset
    last_at: float | None  # loop time of the latest answer

    if TYPE_CHECKING:
        # The counts' slots are made from MockStats' fields: to the type checker, each is an int.
        def __getattr__(self, name: str) -> int: ...

        def __setattr__(self, name: str, value: int) -> None: ...

    def __init__(self) -> None:
        self._clear()

    def _clear(self) -> None:
        for name in COUNTS:
            setattr(self, name, 0)
        self.first_at = self.last_at = None

    def enter(self, now: float) -> None:
        """Count a request arriving at loop time `now`."""
        if self.first_at is None:
            self.first_at = now
        self.requests += 1
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)

    def snapshot(self) -> MockStats:
        """Return a frozen copy of the counters."""
        first, last = self.first_at, self.last_at
        active_s = last - first if first is not None and last is not None else 0.0
        return MockStats(**{name: getattr(self, name) for name in COUNTS}, active_s=active_s)

    def reset(self) -> None:
        """Zero every counter but `in_flight`; the peak restarts from what is in flight now."""
        in_flight = self.in_flight
        self._clear()
        self.in_flight = self.peak_in_flight = in_flight


class SuccessLog:
    """The request ids answered 200, to spot a client doing the same work twice.

    Bounded: past `max_ids`, the oldest ids are forgotten (a dict keeps insertion order), so a
    long-running mock's memory stays flat.
    """

    def __init__(self, *, max_ids: int = 1_000_000) -> None:
        self._ids: dict[str, None] = {}
        self._max_ids = max_ids

    def __contains__(self, request_id: str) -> bool:
        return request_id in self._ids

    def add(self, request_id: str) -> None:
        """Remember that `request_id` was answered 200."""
        self._ids[request_id] = None
        if len(self._ids) > self._max_ids:
            del self._ids[next(iter(self._ids))]

    def clear(self) -> None:
        """Forget every id."""
        self._ids.clear()
