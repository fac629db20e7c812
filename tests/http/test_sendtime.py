"""Admissions dated when the request's headers go out (aiohttp's trace signal)."""

import asyncio

from conveyor import Limiter
from conveyor.engine.context import current_slots
from conveyor.http.sendtime import send_time_trace
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
