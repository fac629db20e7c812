"""Edge cases of stopping, sources, timeouts and the virtual clock, each pinned down."""

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

import conveyor
from conveyor import AttemptTimeout, ItemFinished, Retry, RetryAfter, RunFinished
from conveyor.testing import VirtualClock


def test_fail_fast_stops_starting_items_at_once(clock: VirtualClock):
    """With a slow consumer, fail_fast still stops new starts the moment an item fails."""
    started: list[float] = []

    async def work(i: int) -> int:
        started.append(clock.now)
        await asyncio.sleep(1)
        if i == 0:
            raise ValueError("boom")
        return i

    async def main() -> None:
        async for _ in conveyor.stream(work, range(1000), concurrency=5, fail_fast=True):
            await asyncio.sleep(10)  # a slow consumer

    with pytest.raises(ValueError, match="boom"):
        clock.run(main())
    assert all(t <= 1.0 for t in started)
    assert len(started) <= 10


def test_cancelled_error_from_the_function_is_a_failure_not_a_dead_worker(run):
    """fn raising CancelledError on its own (a cancelled shared future) fails that item only."""

    async def work(i: int) -> int:
        if i == 2:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            future.cancel()
            await future
        return i

    report = run(conveyor.map(work, range(10), concurrency=1))
    assert [o.state for o in report] == ["succeeded"] * 2 + ["failed"] + ["succeeded"] * 7


def test_a_hung_thread_does_not_time_out_the_calls_queued_behind_it():
    """Plain functions: the timeout starts when the thread does (real time, threads).

    Item 0 blocks its thread for 0.3 s and times out at 0.05 s; item 1 then waits for a
    thread, and is only timed once it runs, so it succeeds.
    """
    ran: list[int] = []

    def work(i: int) -> int:
        ran.append(i)
        if i == 0:
            time.sleep(0.3)
        return i

    report = conveyor.run_sync(work, [0, 1], concurrency=1, retry=Retry(attempts=1, timeout_s=0.05))
    assert [o.state for o in report] == ["failed", "succeeded"]
    assert isinstance(report.outcomes[0].error, AttemptTimeout)
    assert ran == [0, 1]


@pytest.mark.parametrize("concurrency", [1, 2])
def test_a_due_retry_runs_while_an_async_source_waits(clock: VirtualClock, concurrency: int):
    """A source fed by the run's own results (a crawler) cannot block a due retry.

    At concurrency 1 the one worker is the one pulling: it stops waiting for the pull when the
    retry falls due, runs it, and takes the pulled item afterwards.
    """
    queue: asyncio.Queue[int | None] = asyncio.Queue()
    tries: dict[int, int] = {}
    done = 0

    async def feed() -> AsyncIterator[int]:
        while (item := await queue.get()) is not None:
            yield item

    async def work(i: int) -> int:
        nonlocal done
        tries[i] = tries.get(i, 0) + 1
        if tries[i] == 1:
            raise RetryAfter(1)
        done += 1
        if done == 2:
            queue.put_nowait(None)  # all work done: close the feed
        return i

    async def main() -> conveyor.Report[int, int]:
        queue.put_nowait(0)
        queue.put_nowait(1)
        return await conveyor.map(work, feed(), concurrency=concurrency, retry=Retry(attempts=2))

    report = clock.run(main())
    assert report.summary.succeeded == 2
    assert clock.now == pytest.approx(1.0)


def test_auto_timeout_follows_an_api_that_slows_down(clock: VirtualClock):
    """After the warm-up at 0.1 s, calls that take 0.5 s soon succeed again (no lock-in)."""
    calls = 0

    async def work(i: int) -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.1 if i < 40 else 0.5)
        return i

    retry = Retry(attempts=8, timeout_s="auto", base_delay_s=0.01, max_delay_s=0.05)
    report = clock.run(conveyor.map(work, range(100), concurrency=4, retry=retry))
    assert report.summary.succeeded == 100
    timeouts = calls - 100
    assert 0 < timeouts < 40
    error = AttemptTimeout(0.4, automatic=True)
    assert "automatic timeout" in str(error)


def test_a_retry_predicate_that_raises_still_settles_the_item(run):
    """If Retry(on=...) itself raises, the item fails with its own error and a note why."""

    def broken(exc: BaseException) -> bool:
        raise RuntimeError("bad predicate")

    async def work(i: int) -> int:
        if i == 1:
            raise KeyError(i)
        return i

    report = run(conveyor.map(work, range(3), retry=Retry(attempts=3, on=broken)))
    assert [o.state for o in report] == ["succeeded", "failed", "succeeded"]
    error = report.outcomes[1].error
    assert isinstance(error, KeyError)
    assert "the retry policy raised" in error.__notes__[0]


def test_shutdown_finishes_even_if_cancelled_again(clock: VirtualClock):
    """A second cancellation during shutdown still settles waiting retries and ends the run."""
    events: list[Any] = []

    async def work(i: int) -> int:
        if i < 2:
            raise RetryAfter(100)
        try:
            await asyncio.sleep(100)
        finally:
            await asyncio.sleep(1)  # slow clean-up: the second cancel lands here
        return i

    async def main() -> None:
        task = asyncio.create_task(
            conveyor.map(work, range(4), retry=Retry(attempts=2), on_event=events.append)
        )
        await asyncio.sleep(1)
        task.cancel()
        await asyncio.sleep(0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    clock.run(main())
    finished = sorted(e.outcome.index for e in events if isinstance(e, ItemFinished))
    assert finished == [0, 1, 2, 3]
    assert isinstance(events[-1], RunFinished)


def test_aclose_from_another_task_stops_the_consumer(clock: VirtualClock):
    """A "cancel" button: aclose() from another task ends the run and the consumer's loop."""

    async def work(i: int) -> int:
        await asyncio.sleep(10)
        return i

    async def main() -> tuple[int, conveyor.Summary]:
        stream = conveyor.stream(work, range(100), concurrency=5)
        seen = 0

        async def consume() -> None:
            nonlocal seen
            async for _ in stream:
                seen += 1

        consumer = asyncio.create_task(consume())
        await asyncio.sleep(25)
        await stream.aclose()
        await consumer
        return seen, stream.summary

    seen, summary = clock.run(main())
    assert seen == 10
    assert summary.cancelled == 5
    assert clock.now == 25.0


def test_no_retry_starts_at_the_deadline(clock: VirtualClock):
    """A retry picked up only at the deadline (the cap was busy) fails without a call."""
    calls: list[tuple[int, float]] = []

    async def work(i: int) -> int:
        calls.append((i, clock.now))
        if i == 0 and len(calls) == 1:
            raise RetryAfter(1)
        await asyncio.sleep(5)
        return i

    retry = Retry(attempts=3, deadline_s=5)
    report = clock.run(conveyor.map(work, [0, 1], concurrency=1, retry=retry))
    assert calls == [(0, 0.0), (1, 0.0)]
    assert isinstance(report.outcomes[0].error, conveyor.DeadlineExceeded)


def test_source_errors_carry_the_partial_report(run):
    """map's SourceError holds the report of what settled before the source broke."""

    def items() -> Any:
        yield 1
        yield 2
        raise OSError("gone")

    async def work(i: int) -> int:
        return i

    with pytest.raises(conveyor.SourceError) as info:
        run(conveyor.map(work, items()))
    assert info.value.report is not None
    assert info.value.report.values == [1, 2]


def test_a_huge_cap_on_a_short_input_starts_few_workers(run):
    """Workers start as items arrive: concurrency=1,000,000 over 3 items is cheap."""
    tasks_seen: list[int] = []

    async def work(i: int) -> int:
        tasks_seen.append(len(asyncio.all_tasks()))
        await asyncio.sleep(1)
        return i

    report = run(conveyor.map(work, range(3), concurrency=1_000_000))
    assert report.summary.max_concurrency == 3
    assert max(tasks_seen) <= 6


def test_summary_before_iteration_is_zero():
    """A stream's summary before it starts has no duration, even on a clock far from zero."""
    clock = VirtualClock(start_s=5000)

    async def work(i: int) -> int:
        return i

    async def main() -> float:
        return conveyor.stream(work, [1]).summary.duration_s

    assert clock.run(main()) == 0.0


def test_a_shared_exception_gets_one_note(run):
    """One exception instance raised for many items is not annotated once per item."""
    shared = KeyError("shared")

    async def work(i: int) -> int:
        raise shared

    run(conveyor.map(work, range(5), retry=Retry(attempts=2, base_delay_s=0.01, on=KeyError)))
    assert len(shared.__notes__) == 1


def test_stream_without_a_loop_says_what_to_do():
    """conveyor.stream() from plain code is refused with a pointer to run_sync."""

    async def work(i: int) -> int:
        return i

    with pytest.raises(conveyor.ConfigError, match="run_sync"):
        conveyor.stream(work, [1])


def test_virtual_time_far_from_zero_still_moves():
    """Past 2**24 s a nanosecond is below float precision; timers must still fire."""
    clock = VirtualClock(start_s=1.7e7)

    async def main() -> float:
        await asyncio.sleep(1)
        return clock.now

    assert clock.run(main()) >= 1.7e7 + 1


def test_virtual_time_stands_still_while_a_thread_works():
    """A plain function in a thread takes no virtual time, so a timeout cannot fire during it."""
    clock = VirtualClock()

    def work(i: int) -> int:
        time.sleep(0.02)
        return i

    async def main() -> conveyor.Report[int, int]:
        return await conveyor.map(work, [1, 2], retry=Retry(attempts=1, timeout_s=5))

    report = clock.run(main())
    assert report.values == [1, 2]
    assert clock.now == 0.0


def test_an_item_pulled_while_a_retry_ran_is_settled_when_the_run_closes(clock: VirtualClock):
    """An item a pull got that no worker took settles as cancelled when the run closes.

    Concurrency 1: the worker stops waiting for a pull to run a due retry; the pull then gets
    item 1, and the run is closed before anyone took it.
    """
    yielded: list[int] = []
    settled: dict[int, str] = {}
    tries: dict[int, int] = {}

    async def feed() -> AsyncIterator[int]:
        yielded.append(0)
        yield 0
        await asyncio.sleep(2)  # item 1 comes after the retry fell due
        yielded.append(1)
        yield 1

    async def work(i: int) -> int:
        tries[i] = tries.get(i, 0) + 1
        if tries[i] == 1:
            raise RetryAfter(1)
        await asyncio.sleep(10)  # the retry is slow: the run is closed during it
        return i

    def on_event(event: object) -> None:
        if isinstance(event, ItemFinished):
            settled[event.outcome.item] = event.outcome.state

    async def main() -> None:
        run = conveyor.stream(
            work, feed(), concurrency=1, retry=Retry(attempts=3), on_event=on_event
        )

        async def close_later() -> None:
            await asyncio.sleep(5)
            await run.aclose()

        closer = asyncio.ensure_future(close_later())
        async with run:
            async for _ in run:
                pass
        await closer

    clock.run(main())
    assert yielded == [0, 1]
    assert settled == {0: "cancelled", 1: "cancelled"}


def test_a_source_that_raises_cancelled_error_fails_the_run(clock: VirtualClock):
    """Its own CancelledError, raised while a retry waits, is the source's error: SourceError."""
    tries: dict[int, int] = {}

    async def feed() -> AsyncIterator[int]:
        yield 0
        await asyncio.sleep(5)
        raise asyncio.CancelledError

    async def work(i: int) -> int:
        tries[i] = tries.get(i, 0) + 1
        if tries[i] <= 3:
            raise RetryAfter(0.5)
        return i

    async def main() -> None:
        await conveyor.map(work, feed(), concurrency=1, retry=Retry(attempts=5))

    with pytest.raises(conveyor.SourceError) as info:
        clock.run(main())
    assert isinstance(info.value.__cause__, asyncio.CancelledError)


def test_an_empty_summary_is_all_zeros_but_its_concurrency():
    """Summary.empty: every count 0, every time and rate 0.0, and the concurrency given."""
    summary = conveyor.Summary.empty(concurrency=8).to_dict()
    assert summary.pop("concurrency") == 8
    assert set(summary.values()) == {0}
    assert isinstance(summary["duration_s"], float)
    assert isinstance(summary["total"], int)
