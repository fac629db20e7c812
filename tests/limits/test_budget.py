"""BudgetHolds: hold a call's bound if it fits, wait while calls in flight may free room."""

import asyncio

from conveyor.limits.budget import BudgetHolds, Refusal

BUDGET = 10.0


def fitting(holds: BudgetHolds, key: str, bound: float, spent: list[float]):
    def try_hold() -> Refusal | None:
        if spent[0] + holds.held_usd + bound > BUDGET:
            return f"{key} does not fit", False
        holds.hold(key, bound)
        return None

    return try_hold


def test_a_call_that_fits_is_held_at_once():
    async def main() -> None:
        holds, spent = BudgetHolds(), [0.0]
        assert await holds.admit(fitting(holds, "a", 4, spent), stopped=bool) is None
        assert (len(holds), holds.held_usd) == (1, 4)

    asyncio.run(main())


def test_a_call_that_does_not_fit_waits_for_a_release_then_is_held():
    """Held 8 of 10: a bound of 4 waits; 'a' settles for 1 (spent), and then it fits."""

    async def main() -> None:
        holds, spent = BudgetHolds(), [0.0]
        holds.hold("a", 8)
        waiting = asyncio.ensure_future(
            holds.admit(fitting(holds, "b", 4, spent), stopped=lambda: False)
        )
        for _ in range(5):
            await asyncio.sleep(0)
        assert not waiting.done()
        spent[0] += 1
        holds.release("a")
        assert await asyncio.wait_for(waiting, 5) is None
        assert holds.held_usd == 4

    asyncio.run(main())


def test_it_refuses_with_nothing_held_or_when_final():
    async def main() -> None:
        holds, spent = BudgetHolds(), [7.0]
        assert await holds.admit(fitting(holds, "a", 4, spent), stopped=bool) == ("a does not fit")
        final = await holds.admit(lambda: ("no price", True), stopped=bool)
        assert final == "no price"

    asyncio.run(main())


def test_a_stop_ends_the_wait_with_an_empty_reason():
    async def main() -> None:
        holds, spent, stop = BudgetHolds(), [0.0], [False]
        holds.hold("a", 9)
        waiting = asyncio.ensure_future(
            holds.admit(fitting(holds, "b", 4, spent), stopped=lambda: stop[0])
        )
        await asyncio.sleep(0)
        stop[0] = True
        holds.wake()
        assert await asyncio.wait_for(waiting, 5) == ""
        assert holds.held_usd == 9

    asyncio.run(main())
