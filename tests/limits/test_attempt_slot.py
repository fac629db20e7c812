"""Reaching the attempt's slot from inside the task, and dating admissions when calls go out."""

import asyncio

import pytest

import conveyor
from conveyor import ConfigError, Limiter
from conveyor.limits.constraints import BURST_SPREAD
from conveyor.policy.answer_dating import JUDGE_EVERY
from conveyor.policy.window import SlidingWindow
from conveyor.testing import VirtualClock


def test_a_task_settles_the_real_cost_through_attempt_slot(clock: VirtualClock):
    """Settling usage from inside the task refunds the estimate: the next call need not wait."""
    limiter = Limiter("llm", tokens_per_second=100, window_s=1.0)
    starts: list[float] = []

    async def call(i: int) -> int:
        starts.append(clock.now)
        conveyor.attempt_slot().settle(10)  # the answer's usage: far below the estimate
        return i

    report = clock.run(
        conveyor.map(call, range(2), concurrency=1, limiters=[limiter], cost=lambda _: 90)
    )
    assert report.summary.succeeded == 2
    # Unsettled, the second 90 would wait a whole window; settled, only the pacer's step.
    assert starts[1] == pytest.approx(10 * BURST_SPREAD / 100)


def test_a_plain_function_reaches_its_slot_from_its_thread(clock: VirtualClock):
    """A sync task runs in a thread, and still finds the slot of its own attempt."""
    limiter = Limiter("api", requests_per_second=50)
    seen: list[bool] = []

    def call(i: int) -> int:
        seen.append(conveyor.attempt_slot(limiter).limiter is limiter)
        return i

    report = clock.run(conveyor.map(call, range(3), concurrency=2, limiters=[limiter]))
    assert report.summary.succeeded == 3
    assert seen == [True, True, True]


def test_attempt_slot_names_what_is_wrong(clock: VirtualClock):
    """Outside a limited attempt, with two limiters unnamed, or a foreign limiter: ConfigError."""
    a, b, other = Limiter("a"), Limiter("b"), Limiter("other")
    with pytest.raises(ConfigError, match="outside an attempt"):
        conveyor.attempt_slot()
    errors: list[str] = []

    async def call(_: int) -> None:
        for limiter in (None, other):
            try:
                conveyor.attempt_slot(limiter)
            except ConfigError as exc:
                errors.append(str(exc))
        assert conveyor.attempt_slot(b).limiter is b

    async def unlimited(_: int) -> None:
        conveyor.attempt_slot()  # a run without limiters holds no slot

    report = clock.run(conveyor.map(call, [1], limiters=[a, b], fail_fast=True))
    assert report.summary.succeeded == 1
    assert "say which" in errors[0]
    assert "'other'" in errors[1]
    assert "limiters=[...]" in errors[1]
    failed = clock.run(conveyor.map(unlimited, [1]))
    assert isinstance(failed.outcomes[0].error, ConfigError)


def test_an_admission_is_dated_when_its_call_goes_out(clock: VirtualClock):
    """mark_sent moves the window's entry to the send time; the next window waits from there."""
    limiter = Limiter("api", requests_per_second=1, window_s=1.0)

    async def main() -> float:
        loop = asyncio.get_running_loop()
        slot = await limiter.admit()
        await asyncio.sleep(0.3)  # a busy loop: the call goes out 0.3 s after its grant
        slot.mark_sent(loop.time())
        slot.release()
        async with limiter.acquire():
            return loop.time()

    # The second request waits one window (plus the margin) from the send, not the grant.
    assert clock.run(main()) >= 1.3


def test_a_window_waits_for_the_latest_of_what_must_leave():
    """An entry dated later sits before younger ones; the wait covers the latest of those."""
    window = SlidingWindow(share=2.0, window_s=1.0)
    first = window.admit(0.0, 1.0)
    window.admit(0.5, 1.0)
    first.time = 0.8  # its call went out at 0.8
    # One unit must leave: the oldest entry in the log is the first, now dated 0.8.
    assert window.wait_s(0.9, 1.0) == pytest.approx(0.9, abs=1e-6)


def test_calls_of_the_first_window_are_dated_by_their_answers(clock: VirtualClock):
    """A first-window call answered at 0.3 s holds the next window back from 0.3 s, once."""
    limiter = Limiter("api", requests_per_second=1, window_s=1.0)

    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        async with limiter.acquire():
            await asyncio.sleep(0.3)  # the call, answered at 0.3 s
        async with limiter.acquire():
            second = loop.time()
            await asyncio.sleep(0.3)
        async with limiter.acquire():
            return second, loop.time()

    second, third = clock.run(main())
    # Dated at its answer (0.3 s), the first call keeps the second out until 0.3 + 1.01 s.
    assert second == pytest.approx(1.31, abs=0.001)
    # The second call is past the first window: dated when it went out, not by its answer.
    assert third == pytest.approx(second + 1.01, abs=0.001)


def test_a_late_answer_from_a_steady_api_holds_the_next_window_back(clock: VirtualClock):
    """Once round trips are steady (50 ms), a call answered 40 ms late counts from 40 ms later."""
    limiter = Limiter("api", requests_per_second=1, window_s=1.0)

    async def main() -> tuple[float, float, float]:
        loop = asyncio.get_running_loop()
        for _ in range(JUDGE_EVERY + 1):  # the first window's call, then enough to judge
            async with limiter.acquire():
                await asyncio.sleep(0.05)
        async with limiter.acquire():
            steady = loop.time()
            await asyncio.sleep(0.05)
        async with limiter.acquire():
            stalled = loop.time()
            await asyncio.sleep(0.09)  # held 40 ms before the API stamped it
        async with limiter.acquire():
            return steady, stalled, loop.time()

    steady, stalled, after = clock.run(main())
    # A call answered in the usual time keeps its date: the next one goes one window later.
    assert stalled == pytest.approx(steady + 1.01, abs=0.001)
    # The stalled call is dated 35 ms after it left (40 ms late, less the 5 ms of lateness the
    # 10 ms margin absorbs for every call): the next one waits 35 ms more.
    assert after == pytest.approx(stalled + 0.035 + 1.01, abs=0.001)


class _Learning(Limiter):
    """Records the send time each error is learned against."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.learned_against: list[float | None] = []

    def learn_from_error(self, error: BaseException, *, sent_at: float | None = None) -> None:
        self.learned_against.append(sent_at)
        super().learn_from_error(error, sent_at=sent_at)


def test_an_error_is_learned_against_its_send_time_not_its_new_date(clock: VirtualClock):
    """A first-window failure is dated at its answer, but its headers are read from its send."""
    limiter = _Learning("api", requests_per_second=5, window_s=1.0)

    async def main() -> float:
        slot = await limiter.admit()
        await asyncio.sleep(0.1)
        slot.release(RuntimeError("the API failed"))
        return slot.admitted_at

    assert clock.run(main()) == pytest.approx(0.1)  # dated at its answer
    assert limiter.learned_against == [0.0]  # learned against when it left


def test_a_slot_given_back_unsent_is_not_dated_by_an_answer(clock: VirtualClock):
    """release(sent=False): no answer came, so the first-window rule does not apply."""
    limiter = Limiter("api", requests_per_second=1, window_s=1.0)

    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        slot = await limiter.admit()
        await asyncio.sleep(0.3)
        slot.release(sent=False)
        async with limiter.acquire():
            return slot.admitted_at, loop.time()

    dated, after = clock.run(main())
    assert dated == 0.0
    assert after == pytest.approx(1.01, abs=0.001)
