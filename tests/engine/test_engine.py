"""The engine on virtual time: cap, laziness, settling, retries, timeouts, events, cancellation."""

import asyncio
import random
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

import conveyor
from conveyor import (
    AttemptTimeout,
    DeadlineExceeded,
    ItemFinished,
    ItemRetrying,
    ItemStarted,
    Retry,
    RetryAfter,
    RunFinished,
)
from conveyor.testing import VirtualClock


class FixedRng:
    """Jitter source that always gives the same sample."""

    def __init__(self, u: float) -> None:
        self.u = u

    def random(self) -> float:
        return self.u


class Counter:
    """Counts calls in flight and remembers the most seen at once."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0

    def enter(self) -> None:
        self.now += 1
        self.peak = max(self.peak, self.now)

    def leave(self) -> None:
        self.now -= 1


def test_concurrency_cap_is_never_exceeded(run):
    """With 7 allowed, no more than 7 calls are ever in flight, and 7 are reached."""
    counter = Counter()

    async def work(i: int) -> int:
        counter.enter()
        await asyncio.sleep(random.Random(i).uniform(0.1, 2.0))
        counter.leave()
        return i * 2

    report = run(conveyor.map(work, range(100), concurrency=7))
    assert counter.peak == 7
    assert report.summary.max_concurrency == 7
    assert [o.value for o in report] == [i * 2 for i in range(100)]


def test_map_keeps_input_order_and_stream_completion_order(run):
    """map returns outcomes in input order; stream yields them as they finish."""

    async def work(delay: float) -> float:
        await asyncio.sleep(delay)
        return delay

    delays = [3.0, 1.0, 2.0]

    async def main() -> tuple[list[float | None], list[float | None]]:
        report = await conveyor.map(work, delays, concurrency=3)
        streamed = [o.value async for o in conveyor.stream(work, delays, concurrency=3)]
        return [o.value for o in report], streamed

    in_order, by_completion = run(main())
    assert in_order == [3.0, 1.0, 2.0]
    assert by_completion == [1.0, 2.0, 3.0]


def test_items_are_pulled_lazily(run):
    """The engine never holds more unsettled items than the calls in flight: it pulls on demand."""
    pulled = 0
    settled = 0
    lead: list[int] = []

    def items() -> Iterator[int]:
        nonlocal pulled
        for i in range(50):
            pulled += 1
            lead.append(pulled - settled)
            yield i

    def on_event(event: object) -> None:
        nonlocal settled
        if isinstance(event, ItemFinished):
            settled += 1

    async def work(i: int) -> int:
        await asyncio.sleep(1 + i % 3)
        return i

    run(conveyor.map(work, items(), concurrency=5, on_event=on_event))
    assert pulled == 50
    assert max(lead) == 5


def test_a_slow_consumer_holds_back_the_workers(run):
    """Outcomes waiting for a slow consumer are bounded: workers stop pulling when it lags."""
    from conveyor.engine.runner import BUFFER

    pulled = 0
    consumed = 0
    lag: list[int] = []

    def items() -> Iterator[int]:
        nonlocal pulled
        for i in range(5 * BUFFER):
            pulled += 1
            lag.append(pulled - consumed)
            yield i

    async def work(i: int) -> int:
        return i

    async def main() -> None:
        nonlocal consumed
        async for _ in conveyor.stream(work, items(), concurrency=8):
            consumed += 1
            await asyncio.sleep(0.001)

    run(main())
    assert consumed == 5 * BUFFER
    assert max(lag) <= BUFFER + 8 + 1


def test_endless_input_streams_until_the_consumer_stops(run):
    """An endless generator is fine: breaking out stops the run and cancels the rest."""

    def forever() -> Iterator[int]:
        i = 0
        while True:
            yield i
            i += 1

    async def work(i: int) -> int:
        await asyncio.sleep(1)
        return i

    async def main() -> tuple[int, conveyor.Summary]:
        seen = 0
        async with conveyor.stream(work, forever(), concurrency=10) as outcomes:
            async for _ in outcomes:
                seen += 1
                if seen == 25:
                    break
        return seen, outcomes.summary

    seen, summary = run(main())
    assert seen == 25
    # The ones in flight when we left were cancelled, and counted as such.
    assert summary.cancelled > 0
    assert summary.succeeded + summary.cancelled == summary.total


def test_async_iterables_are_accepted(run):
    """Items may come from an async generator."""

    async def items() -> AsyncIterator[int]:
        for i in range(20):
            await asyncio.sleep(0.01)
            yield i

    async def work(i: int) -> int:
        return i + 1

    report = run(conveyor.map(work, items(), concurrency=4))
    assert report.values == list(range(1, 21))


def test_every_item_settles_exactly_once(run):
    """Mixed successes and failures: each index appears once, with the right state."""

    async def work(i: int) -> int:
        await asyncio.sleep(i % 5)
        if i % 3 == 0:
            raise ValueError(f"bad {i}")
        return i

    report = run(conveyor.map(work, range(60), concurrency=8))
    assert [o.index for o in report] == list(range(60))
    for o in report:
        assert o.state == ("failed" if o.index % 3 == 0 else "succeeded")
    assert report.summary.failed == 20
    assert report.summary.succeeded == 40
    failed = report.failed[0]
    assert (failed.error_type, failed.error_message, failed.attempts) == ("ValueError", "bad 0", 1)


def test_failures_are_settled_not_raised_by_default(run):
    """A failing item does not stop the run or raise; raise_on_failure groups them on demand."""

    async def work(i: int) -> int:
        if i == 2:
            raise KeyError(i)
        return i

    report = run(conveyor.map(work, range(5)))
    assert report.summary.succeeded == 4
    with pytest.raises(ExceptionGroup) as info:
        report.raise_on_failure()
    assert isinstance(info.value.exceptions[0], KeyError)


def test_backoff_delays_are_exact_on_virtual_time(clock: VirtualClock):
    """Retries wait full-jitter delays: with u=0.5, base 1 s: 0.5 s, 1 s, 2 s."""
    starts: list[float] = []

    async def flaky(_: int) -> str:
        starts.append(clock.now)
        if len(starts) < 4:
            raise TimeoutError
        return "ok"

    policy = Retry(attempts=4, base_delay_s=1.0, max_delay_s=60.0, rng=FixedRng(0.5))
    report = clock.run(conveyor.map(flaky, [0], retry=policy))
    assert starts == [0.0, 0.5, 1.5, 3.5]
    outcome = report.outcomes[0]
    assert (outcome.state, outcome.attempts, outcome.elapsed_s) == ("succeeded", 4, 3.5)
    assert report.summary.retries == 3


def test_retry_after_overrides_backoff(clock: VirtualClock):
    """RetryAfter(7) waits exactly 7 s, whatever the backoff would have said."""
    starts: list[float] = []

    async def busy(_: int) -> str:
        starts.append(clock.now)
        if len(starts) == 1:
            raise RetryAfter(7)
        return "ok"

    clock.run(conveyor.map(busy, [0], retry=Retry(attempts=2, base_delay_s=0.1, max_delay_s=1)))
    assert starts == [0.0, 7.0]


def test_http_429_with_retry_after_header_is_honoured(clock: VirtualClock):
    """An HTTP-style 429 error with a Retry-After header waits that long before retrying."""
    starts: list[float] = []

    class TooMany(Exception):
        status_code = 429
        headers = {"Retry-After": "3"}  # noqa: RUF012

    async def call(_: int) -> str:
        starts.append(clock.now)
        if len(starts) == 1:
            raise TooMany
        return "ok"

    report = clock.run(conveyor.map(call, [0], retry=Retry(attempts=3)))
    assert starts == [0.0, 3.0]
    assert report.outcomes[0].ok


def test_gives_up_after_attempts_with_the_last_error(run):
    """After the last attempt the item fails with its error and the attempt count."""

    async def down(_: int) -> str:
        raise ConnectionRefusedError("refused")

    report = run(conveyor.map(down, [0], retry=Retry(attempts=3, rng=FixedRng(0.0))))
    outcome = report.outcomes[0]
    assert (outcome.state, outcome.attempts, outcome.error_type) == (
        "failed",
        3,
        "ConnectionRefusedError",
    )
    assert any("after 3 attempt(s)" in note for note in outcome.error.__notes__)


def test_non_retryable_errors_fail_at_once(run):
    """A ValueError is not retried by default: one attempt."""
    calls = 0

    async def bug(_: int) -> str:
        nonlocal calls
        calls += 1
        raise ValueError("bug")

    report = run(conveyor.map(bug, [0], retry=Retry(attempts=5)))
    assert calls == 1
    assert report.outcomes[0].attempts == 1


def test_attempt_timeout_cancels_and_retries(clock: VirtualClock):
    """A hung attempt is cut at timeout_s, fails with AttemptTimeout, and is retried."""
    starts: list[float] = []

    async def sometimes_hangs(_: int) -> str:
        starts.append(clock.now)
        if len(starts) == 1:
            await asyncio.sleep(3600)
        return "ok"

    policy = Retry(attempts=2, timeout_s=5, rng=FixedRng(0.0))
    report = clock.run(conveyor.map(sometimes_hangs, [0], retry=policy))
    assert starts == [0.0, 5.0]
    assert report.outcomes[0].ok
    assert report.summary.latency_max_s == 5.0


def test_attempt_timeout_is_reported(clock: VirtualClock):
    """When every attempt hangs, the item fails with AttemptTimeout after timeout_s each."""

    async def hangs(_: int) -> str:
        await asyncio.sleep(3600)
        return "never"

    report = clock.run(conveyor.map(hangs, [0], retry=Retry(attempts=1, timeout_s=2)))
    outcome = report.outcomes[0]
    assert isinstance(outcome.error, AttemptTimeout)
    assert outcome.latency_s == 2.0
    assert clock.now == 2.0


def test_attempts_started_apart_each_time_out_at_their_own_limit(clock: VirtualClock):
    """Under one fixed limit, each hung attempt is cut exactly timeout_s after its own start."""

    async def one_a_second() -> AsyncIterator[int]:
        for n in range(6):
            yield n
            await asyncio.sleep(1)  # item n starts at n s

    async def work(n: int) -> int:
        if n % 2:
            await asyncio.sleep(3600)  # the odd ones hang; the even ones end at once
        return n

    async def main() -> list[tuple[int, float]]:
        cut: list[tuple[int, float]] = []
        async for outcome in conveyor.stream(
            work, one_a_second(), concurrency=6, retry=Retry(attempts=1, timeout_s=4.5)
        ):
            if isinstance(outcome.error, AttemptTimeout):
                cut.append((outcome.item, clock.now))
            else:
                assert outcome.value == outcome.item
        return cut

    assert clock.run(main()) == [(1, 5.5), (3, 7.5), (5, 9.5)]


def test_own_timeout_error_is_not_mistaken_for_ours(run):
    """A TimeoutError raised by the function is its own error, not an AttemptTimeout."""

    async def raises_timeout(_: int) -> str:
        raise TimeoutError("upstream said timeout")

    report = run(conveyor.map(raises_timeout, [0], retry=Retry(attempts=1, timeout_s=10)))
    error = report.outcomes[0].error
    assert type(error) is TimeoutError
    assert str(error) == "upstream said timeout"


def test_deadline_bounds_the_whole_item(clock: VirtualClock):
    """Attempts and waits together stop at deadline_s, with DeadlineExceeded."""

    async def slow(_: int) -> str:
        await asyncio.sleep(4)
        raise TimeoutError

    policy = Retry(attempts=10, base_delay_s=1, max_delay_s=1, deadline_s=10, rng=FixedRng(0.99))
    report = clock.run(conveyor.map(slow, [0], retry=policy))
    outcome = report.outcomes[0]
    # 0-4 fail, wait 0.99, 4.99-8.99 fail, wait 0.99, 9.98: the last attempt is cut at 10.
    assert isinstance(outcome.error, DeadlineExceeded)
    assert outcome.attempts == 3
    assert outcome.elapsed_s == pytest.approx(10.0)


def test_retry_waits_do_not_hold_a_slot(clock: VirtualClock):
    """With concurrency=1, another item runs while a failed one waits for its retry."""
    log: list[tuple[float, str]] = []
    counter = Counter()

    async def work(name: str) -> str:
        counter.enter()
        log.append((clock.now, name))
        await asyncio.sleep(1)
        counter.leave()
        if name == "a" and sum(1 for _, n in log if n == "a") == 1:
            raise RetryAfter(5)
        return name

    report = clock.run(conveyor.map(work, ["a", "b"], concurrency=1, retry=Retry(attempts=2)))
    assert log == [(0.0, "a"), (1.0, "b"), (6.0, "a")]
    assert counter.peak == 1
    assert report.values == ["a", "b"]


def test_retries_run_under_the_cap(clock: VirtualClock):
    """Many items failing at once and retrying never push calls in flight past the cap."""
    counter = Counter()
    attempts: dict[int, int] = {}

    async def work(i: int) -> int:
        counter.enter()
        attempts[i] = attempts.get(i, 0) + 1
        await asyncio.sleep(1)
        counter.leave()
        if attempts[i] < 3:
            raise RetryAfter(0.5)
        return i

    report = clock.run(conveyor.map(work, range(30), concurrency=4, retry=Retry(attempts=3)))
    assert counter.peak == 4
    assert report.summary.succeeded == 30
    assert report.summary.retries == 60


def test_fail_fast_raises_the_first_error_and_cancels_the_rest(run):
    """fail_fast: the first failure is raised; the items in flight are settled as cancelled."""
    events: list[Any] = []

    async def work(i: int) -> int:
        if i == 3:
            await asyncio.sleep(1)
            raise ValueError("item 3 broke")
        await asyncio.sleep(10)
        return i

    async def main() -> None:
        await conveyor.map(work, range(100), concurrency=5, fail_fast=True, on_event=events.append)

    with pytest.raises(ValueError, match="item 3 broke"):
        run(main())
    finished = [e.outcome for e in events if isinstance(e, ItemFinished)]
    states = sorted(o.state for o in finished)
    assert states == ["cancelled"] * 4 + ["failed"]
    assert isinstance(events[-1], RunFinished)
    assert events[-1].summary.cancelled == 4


def test_cancelling_the_consumer_cancels_in_flight_and_leaves_no_task(clock: VirtualClock):
    """Cancelling map() cancels every call, reports them cancelled, and leaks no task."""
    events: list[Any] = []
    cleaned_up = 0

    async def work(i: int) -> int:
        nonlocal cleaned_up
        try:
            await asyncio.sleep(100)
        finally:
            cleaned_up += 1
        return i

    async def main() -> set[asyncio.Task[Any]]:
        task = asyncio.create_task(
            conveyor.map(work, range(10), concurrency=3, on_event=events.append)
        )
        await asyncio.sleep(1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return asyncio.all_tasks() - {asyncio.current_task()}

    leftover = clock.run(main())
    assert leftover == set()
    assert cleaned_up == 3
    finished = [e.outcome.state for e in events if isinstance(e, ItemFinished)]
    assert finished == ["cancelled"] * 3


def test_events_tell_the_story_of_each_item(clock: VirtualClock):
    """Each item: started, then (retrying, started)*, then finished once; run finished last."""
    events: list[Any] = []
    tries: dict[int, int] = {}

    async def work(i: int) -> int:
        tries[i] = tries.get(i, 0) + 1
        if i == 1 and tries[i] == 1:
            raise RetryAfter(2)
        return i

    clock.run(conveyor.map(work, range(3), on_event=events.append, retry=Retry(attempts=2)))
    story = [
        (type(e).__name__, e.index if not isinstance(e, ItemFinished) else e.outcome.index)
        for e in events
        if not isinstance(e, RunFinished)
    ]
    per_item = {i: [name for name, idx in story if idx == i] for i in range(3)}
    assert per_item[0] == ["ItemStarted", "ItemFinished"]
    assert per_item[1] == ["ItemStarted", "ItemRetrying", "ItemStarted", "ItemFinished"]
    retrying = next(e for e in events if isinstance(e, ItemRetrying))
    assert (retrying.delay_s, retrying.reason) == (2.0, "retry-after 2s")
    started = [e for e in events if isinstance(e, ItemStarted) and e.index == 1]
    assert [e.attempt for e in started] == [1, 2]
    assert isinstance(events[-1], RunFinished)
    assert events[-1].summary.total == 3


def test_a_failing_hook_does_not_lose_work(run, caplog: pytest.LogCaptureFixture):
    """If on_event raises, the error is logged and every item still settles."""

    def broken_hook(event: object) -> None:
        raise RuntimeError("progress bar bug")

    async def work(i: int) -> int:
        return i

    report = run(conveyor.map(work, range(5), on_event=broken_hook))
    assert report.summary.succeeded == 5
    assert "progress bar bug" in caplog.text


def test_summary_numbers_are_exact_on_virtual_time(run):
    """Latencies, duration and throughput come out exactly on virtual time."""

    async def work(seconds: int) -> int:
        await asyncio.sleep(seconds)
        return seconds

    summary = run(conveyor.map(work, [1, 2, 3, 4], concurrency=2)).summary
    assert summary.duration_s == 6.0  # 1 and 2 together, then 3 at t=1, 4 at t=2 → ends at 6
    assert summary.latency_mean_s == 2.5
    assert summary.latency_p50_s == 2.0
    assert summary.latency_max_s == 4.0
    assert summary.throughput_per_s == pytest.approx(4 / 6)
    as_dict = summary.to_dict()
    assert as_dict["succeeded"] == 4
    assert all(isinstance(v, int | float) for v in as_dict.values())


def test_source_errors_settle_started_items_then_raise(run):
    """When the items iterable raises, items already started settle, then SourceError."""
    events: list[Any] = []

    def items() -> Iterator[int]:
        yield 1
        yield 2
        raise OSError("disk went away")

    async def work(i: int) -> int:
        await asyncio.sleep(1)
        return i

    with pytest.raises(conveyor.SourceError) as info:
        run(conveyor.map(work, items(), on_event=events.append))
    assert isinstance(info.value.__cause__, OSError)
    settled = [e.outcome.state for e in events if isinstance(e, ItemFinished)]
    assert settled == ["succeeded", "succeeded"]


def test_keyboard_interrupt_in_a_call_stops_the_run(run):
    """A BaseException such as KeyboardInterrupt from fn is not swallowed as a failure."""

    async def work(i: int) -> int:
        if i == 1:
            raise KeyboardInterrupt
        await asyncio.sleep(5)
        return i

    with pytest.raises(KeyboardInterrupt):
        run(conveyor.map(work, range(3), concurrency=3))
