"""Items a source hands over settled, and errors that halt a run: on virtual time."""

import asyncio
from typing import Any

from conveyor import Limiter, Retry, stream
from conveyor.engine.api import halting_stream
from conveyor.engine.settled import Settled


class Stop(Exception):
    """The halting error of these tests."""


class _Half:
    def random(self) -> float:
        return 0.5


async def _collect(items: Any, fn: Any, **kwargs: Any) -> tuple[list[Any], Any]:
    defaults: dict[str, Any] = {
        "halt_on": lambda exc: isinstance(exc, Stop),
        "concurrency": 1,
        "retry": None,
        "on_event": None,
        "limiters": (),
        "cost": None,
    }
    outcomes = halting_stream(fn, items, **{**defaults, **kwargs})
    got = []
    async with outcomes:
        async for outcome in outcomes:
            got.append(outcome)  # noqa: PERF401 - the order they came in
    return got, outcomes.summary


def test_a_settled_item_takes_no_slot_and_is_counted_by_the_summary(run):
    """Settled items skip the call and the limiter, and the summary counts them as settled."""
    limiter = Limiter("api", concurrency=1)
    called: list[int] = []

    async def fn(x: int) -> int:
        called.append(x)
        return x * 10

    items = [1, Settled(2, 20), Settled(3, error=ValueError("not an item")), 4]
    outcomes, summary = run(_collect(items, fn, limiters=[limiter]))
    assert called == [1, 4]
    assert limiter.admitted == 2
    by_item = {o.item: o for o in outcomes}
    assert (by_item[2].state, by_item[2].value, by_item[2].attempts) == ("succeeded", 20, 0)
    assert (by_item[3].state, by_item[3].error_type, by_item[3].attempts) == (
        "failed",
        "ValueError",
        0,
    )
    assert (summary.total, summary.succeeded, summary.failed, summary.cancelled) == (4, 3, 1, 0)


def test_a_halting_error_cancels_its_item_and_reads_no_more(run):
    """The item that met it ends cancelled, not failed; no later item is read or called."""
    read: list[int] = []

    def items() -> Any:
        for i in range(10):
            read.append(i)
            yield i

    async def fn(x: int) -> int:
        if x == 3:
            raise Stop("quota")
        return x

    outcomes, summary = run(_collect(items(), fn))
    assert read == [0, 1, 2, 3]
    stopped = [o for o in outcomes if o.state == "cancelled"]
    assert [(o.item, o.error_type) for o in stopped] == [(3, "Stop")]
    assert (summary.succeeded, summary.failed, summary.cancelled) == (3, 0, 1)


def test_a_halt_cancels_the_retries_waiting(run):
    """An item waiting for its retry when the run halts ends cancelled, never retried."""
    calls: list[int] = []

    async def fn(x: int) -> int:
        calls.append(x)
        if x == 0:
            raise ConnectionError("retry me")
        await asyncio.sleep(0.5)
        raise Stop("quota")

    retry = Retry(attempts=3, base_delay_s=10.0, max_delay_s=10.0, rng=_Half())
    outcomes, summary = run(_collect([0, 1], fn, retry=retry, concurrency=2))
    assert calls == [0, 1]  # item 0's retry, due seconds later, never ran
    assert {o.item: o.state for o in outcomes} == {0: "cancelled", 1: "cancelled"}
    assert (summary.failed, summary.cancelled) == (0, 2)


def test_without_halt_on_the_same_error_fails_its_item(run):
    """Only halt_on makes an error halt: the public stream is unchanged."""

    async def fn(x: int) -> int:
        if x == 1:
            raise Stop("quota")
        return x

    async def main() -> Any:
        outcomes = stream(fn, [0, 1, 2], concurrency=1)
        async with outcomes:
            states = [o.state async for o in outcomes]
        return states, outcomes.summary

    states, summary = run(main())
    assert sorted(states) == ["failed", "succeeded", "succeeded"]
    assert (summary.failed, summary.cancelled) == (1, 0)
