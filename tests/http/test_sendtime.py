"""Admissions dated when the request's headers go out (aiohttp's trace signal)."""

import asyncio

from conveyor import Limiter
from conveyor.engine.context import current_slots
from conveyor.engine.sendtime import send_time_trace
from conveyor.testing import VirtualClock


def test_headers_sent_redates_the_running_attempts_slots(clock: VirtualClock):
    """The trace callback moves the attempt's admission to the moment the headers left."""
    limiter = Limiter("api", requests_per_second=1, window_s=1.0)
    (callback,) = send_time_trace().on_request_headers_sent

    async def main() -> tuple[float, float]:
        slot = await limiter.admit()
        granted = slot.admitted_at
        current_slots.set([slot])
        await asyncio.sleep(0.012)  # opening a connection first
        await callback(None, None, None)  # type: ignore[arg-type]
        return granted, slot.admitted_at

    granted, sent = clock.run(main())
    assert granted == 0.0
    assert sent == 0.012


def test_headers_sent_outside_an_attempt_changes_nothing(clock: VirtualClock):
    """A request sent outside an engine attempt (no slots in context) is left alone."""
    (callback,) = send_time_trace().on_request_headers_sent
    clock.run(callback(None, None, None))  # type: ignore[arg-type]
    assert current_slots.get() == ()


def test_answer_headers_note_when_the_answer_came_once(clock: VirtualClock):
    """The request-end callback notes the answer's arrival; a later one does not move it."""
    limiter = Limiter("api", requests_per_second=1, window_s=1.0)
    (callback,) = send_time_trace().on_request_end

    async def main() -> float | None:
        slot = await limiter.admit()
        current_slots.set([slot])
        await asyncio.sleep(0.05)  # the answer's headers arrive
        await callback(None, None, None)  # type: ignore[arg-type]
        await asyncio.sleep(0.01)
        await callback(None, None, None)  # type: ignore[arg-type]
        return slot.answered_at

    assert clock.run(main()) == 0.05


def test_a_first_window_call_is_dated_by_its_answer_not_by_its_release(clock: VirtualClock):
    """Answered at 0.05 s and released at 0.2 s (the task's own work): dated 0.05 s."""
    limiter = Limiter("api", requests_per_second=1, window_s=1.0)

    async def main() -> float:
        loop = asyncio.get_running_loop()
        slot = await limiter.admit()
        await asyncio.sleep(0.05)
        slot.mark_answered(loop.time())
        await asyncio.sleep(0.15)  # the task works on the answer; the API saw none of it
        slot.release()
        async with limiter.acquire():
            return loop.time()

    assert abs(clock.run(main()) - (0.05 + 1.01)) < 0.001
