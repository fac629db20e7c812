"""run_sync, plain functions in threads, and the clear errors bad input gets."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest

import conveyor
from conveyor import ConfigError, Retry


def test_run_sync_runs_plain_functions_in_threads_under_the_cap():
    """Plain functions run in threads, never more than `concurrency` at once."""
    lock = threading.Lock()
    in_flight = 0
    peak = 0
    gate = threading.Barrier(4, timeout=10)
    threads: set[str] = set()

    def work(i: int) -> int:
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
            threads.add(threading.current_thread().name)
        if i < 4:
            gate.wait()  # the first four must all be running at once to pass this
        with lock:
            in_flight -= 1
        return i * i

    report = conveyor.run_sync(work, range(40), concurrency=4)
    assert report.values == [i * i for i in range(40)]
    assert peak == 4
    assert threading.main_thread().name not in threads


def test_run_sync_runs_async_functions_too():
    """An async function given to run_sync runs on the loop run_sync starts."""

    async def work(i: int) -> int:
        await asyncio.sleep(0)
        return -i

    assert conveyor.run_sync(work, [1, 2, 3]).values == [-1, -2, -3]


def test_plain_function_returning_a_coroutine_is_awaited():
    """A lambda that returns a coroutine (a common shortcut) is awaited, not returned."""

    async def double(i: int) -> int:
        return i * 2

    report = conveyor.run_sync(lambda i: double(i), [1, 2])
    assert report.values == [2, 4]


def test_plain_functions_failing_are_settled_with_retries():
    """A plain function's exception is settled like an async one's, retries included."""
    calls: dict[int, int] = {}

    def flaky(i: int) -> int:
        calls[i] = calls.get(i, 0) + 1
        if calls[i] < 2:
            raise ConnectionResetError("reset")
        return i

    report = conveyor.run_sync(
        flaky, [1, 2], retry=Retry(attempts=2, base_delay_s=0.001, max_delay_s=0.001)
    )
    assert [(o.state, o.attempts) for o in report] == [("succeeded", 2), ("succeeded", 2)]


def test_run_sync_inside_a_loop_says_what_to_do():
    """Calling run_sync from async code fails with a pointer to `await conveyor.map`."""

    async def main() -> None:
        conveyor.run_sync(abs, [1])

    with pytest.raises(ConfigError, match=r"await conveyor\.map"):
        asyncio.run(main())


def test_interrupt_in_run_sync_gives_the_partial_report():
    """KeyboardInterrupt from inside the run surfaces as Interrupted with a partial report."""

    async def work(i: int) -> int:
        if i == 3:
            await asyncio.sleep(0)
            raise KeyboardInterrupt
        if i < 3:
            return i
        await asyncio.Event().wait()  # never set: these are in flight when Ctrl-C comes
        return i

    with pytest.raises(conveyor.Interrupted) as info:
        conveyor.run_sync(work, range(6), concurrency=6)
    report = info.value.report
    summary = report.summary
    assert summary.succeeded == 3
    assert summary.cancelled == 3
    # The report holds the outcomes themselves, not only the counts; the interrupted item
    # carries the interrupt.
    assert [o.state for o in report] == ["succeeded"] * 3 + ["cancelled"] * 3
    assert isinstance(report.outcomes[3].error, KeyboardInterrupt)
    assert [o.index for o in info.value.report] == sorted(o.index for o in info.value.report)


CTRL_C_CHILD = textwrap.dedent(
    """
    import asyncio, json, sys
    import conveyor

    async def work(i):
        if i < 2:
            return i
        print("ready", flush=True) if i == 4 else None
        await asyncio.Event().wait()

    try:
        conveyor.run_sync(work, range(5), concurrency=5)
    except conveyor.Interrupted as exc:
        print(json.dumps(exc.report.summary.to_dict()), flush=True)
        sys.exit(130)
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_real_ctrl_c_settles_in_flight_items_as_cancelled():
    """A real SIGINT to a run_sync process: the partial report counts the cancelled items.

    Real process, real signal: this is the one path virtual time cannot reach. The child
    prints "ready" once all items are in flight, so no sleep guesses the timing.
    """
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    child = subprocess.Popen(
        [sys.executable, "-c", CTRL_C_CHILD],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=30)
    assert child.returncode == 130, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert (summary["succeeded"], summary["cancelled"], summary["total"]) == (2, 3, 5)
    assert "never awaited" not in err
    assert "Task was destroyed" not in err


async def _noop(x: Any) -> Any:
    return x


def _gen_fn(x: int) -> Iterator[int]:
    yield x


async def _agen_fn(x: int) -> Any:
    yield x


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"fn": 42}, "not callable"),
        ({"fn": _gen_fn}, "generator function"),
        ({"fn": _agen_fn}, "async generator function"),
        ({"items": "abc"}, "items is a str"),
        ({"items": 12}, "items=12 is not iterable"),
        ({"concurrency": 0}, "concurrency=0"),
        ({"concurrency": -5}, "concurrency=-5"),
        ({"concurrency": 2.5}, "concurrency=2.5"),
        ({"concurrency": True}, "concurrency=True"),
        ({"retry": 3}, "retry=3"),
        ({"on_event": "print"}, "on_event"),
    ],
)
def test_bad_arguments_are_named_with_the_fix(kwargs, named):
    """Each bad argument fails at the call with a message naming it and what to pass."""
    call: dict[str, Any] = {"fn": _noop, "items": [1, 2], **kwargs}
    with pytest.raises(ConfigError, match=named):
        conveyor.run_sync(call.pop("fn"), call.pop("items"), **call)


def test_coroutine_object_instead_of_function_is_explained():
    """Passing fn(x) instead of fn is caught, explained, and leaves no never-awaited warning."""
    with pytest.raises(ConfigError, match="pass the function itself"):
        conveyor.run_sync(_noop(1), [1])  # type: ignore[call-overload]


def test_stream_checks_arguments_at_the_call():
    """stream() refuses bad arguments when called, not at the first iteration."""

    async def main() -> None:
        conveyor.stream(_noop, [1], concurrency=0)

    with pytest.raises(ConfigError, match="concurrency"):
        asyncio.run(main())


def test_streaming_memory_does_not_grow_with_the_item_count():
    """Streaming 60,000 items costs what the in-flight ones cost, not what all of them cost."""

    def peak_for(n: int) -> int:
        async def main() -> int:
            count = 0
            async for _ in conveyor.stream(_noop, range(n), concurrency=100):
                count += 1
            return count

        tracemalloc.start()
        try:
            assert asyncio.run(main()) == n
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small, large = peak_for(12_000), peak_for(60_000)
    # Five times the items, the same peak: nothing is kept per item. (Both runs are past the
    # 10,000 latencies kept exactly, after which latencies fold into a fixed histogram.)
    assert large < small * 1.2
    assert large < 8_000_000


def test_outcome_unwrap_and_repr():
    """unwrap() returns a value or raises the error; repr shows state and detail."""

    async def work(i: int) -> int:
        if i:
            raise ValueError("no")
        return 7

    ok, bad = conveyor.run_sync(work, [0, 1]).outcomes
    assert ok.unwrap() == 7
    assert "succeeded" in repr(ok)
    with pytest.raises(ValueError, match="no"):
        bad.unwrap()
    assert bad.to_dict()["error_message"] == "no"


def test_run_sync_duration_is_wall_time():
    """On the real clock, a run's duration covers its work (a smoke check of the real path).

    Real time: 5 calls of 20 ms at concurrency 5 overlap, so the run takes 20 ms plus
    overhead, well under the 100 ms they would take one after another.
    """

    async def work(i: int) -> int:
        await asyncio.sleep(0.02)
        return i

    started = time.perf_counter()
    report = conveyor.run_sync(work, range(5), concurrency=5)
    took = time.perf_counter() - started
    assert 0.02 <= report.summary.duration_s <= took
    assert report.summary.duration_s < 0.1
