"""A Redis-backed limiter: what one process learns reaches every other, and outages wait.

Two `RedisLimits` objects on one Redis stand for two processes. A virtual server clock (the
scripts' time argument, what Redis's ``TIME`` gives in production) keeps these exact: no test
waits for real time, except the outage test, which stops and restarts a real server.
"""

import asyncio
import contextlib
import dataclasses
import time
import uuid
from typing import Any

import pytest

from conveyor.errors import ConfigError, QuotaExhausted
from conveyor.jobs.app import App
from conveyor.limits.constraints import BUCKET_LATE_S, BUCKET_RESERVE
from conveyor.limits.costs import Cost
from conveyor.limits.limiter import PACED_MARGIN, WINDOW_MARGIN, Limiter
from conveyor.limits.redis_limiter import (
    ADMITTING,
    RedisLimiter,
    RedisLimits,
    RedisSlot,
    redis_limiter,
    share_limits,
)
from conveyor.policy.bucket import TokenBucket
from conveyor.policy.rates import Rate

from ..services import OwnRedis, redis_url


class ServerClock:
    """The Redis server's clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def two_processes(url: str, clock: ServerClock, **limits) -> tuple[RedisLimiter, RedisLimiter]:
    prefix = f"conveyor-test:{uuid.uuid4().hex}"
    a = RedisLimits(url, prefix=prefix, clock=clock, lease_s=10)
    b = RedisLimits(url, prefix=prefix, clock=clock, lease_s=10)
    return a.limiter("api", **limits), b.limiter("api", **limits)


async def ask(limiter: RedisLimiter, key: str, cost: Cost = 1.0) -> float | None:
    """One admission attempt in Redis: None if admitted, else the seconds to wait."""
    return await limiter.admission.try_once(key, limiter._units(cost))


async def close(*limiters: RedisLimiter) -> None:
    for limiter in limiters:
        await limiter.drain()
        await limiter.redis.aclose()


def test_two_processes_share_one_window():
    """What process A was admitted counts against process B in the same window."""
    url, clock = redis_url(), ServerClock()

    async def main() -> None:
        a, b = two_processes(url, clock, requests_per_second=3, window_s=1)
        first = clock.now
        for _ in range(3):
            assert await ask(a, uuid.uuid4().hex, 1.0) is None
            clock.now += 0.02  # past the pacer's spread (5% of the window per share)
        wait = await ask(b, "b1", 1.0)
        assert wait is not None
        # Until A's first call leaves the window (widened by its margin).
        assert wait == pytest.approx(first + 1 + WINDOW_MARGIN - clock.now, abs=1e-6)
        clock.now += wait
        assert await ask(b, "b2", 1.0) is None
        await close(a, b)

    asyncio.run(main())


def test_a_call_sent_late_is_dated_in_redis_when_it_goes_out():
    """mark_sent re-dates the shared log entry at Redis's clock; the next window waits from it."""
    url, clock = redis_url(), ServerClock()

    async def main() -> None:
        a, b = two_processes(url, clock, requests_per_second=1, window_s=1)
        slot = await a.admit(1.0)
        assert isinstance(slot, RedisSlot)
        clock.now += 0.3  # the call leaves 0.3 s after Redis admitted it (a new connection)
        slot.mark_sent(slot.admitted_at + 0.3)
        await a.drain()
        (entry,) = await a.redis.client.zrange(a.admission.logs[0], 0, -1, withscores=True)
        assert entry[1] == pytest.approx(clock.now)
        # B waits one (widened) window from the moment the call went out, not from its grant.
        wait = await ask(b, "b1", 1.0)
        assert wait == pytest.approx(1 + WINDOW_MARGIN, abs=1e-6)
        slot.release()
        await close(a, b)

    asyncio.run(main())


def test_marks_before_the_redate_is_sent_share_one_round_trip():
    """Two mark_sent calls in one loop step send one re-dating, read at Redis's later clock."""
    url, clock = redis_url(), ServerClock()

    async def main() -> None:
        a, b = two_processes(url, clock, requests_per_second=1, window_s=1)
        slot = await a.admit(1.0)
        assert isinstance(slot, RedisSlot)
        slot.mark_sent(slot.admitted_at + 0.001)  # the attempt starts
        slot.mark_sent(slot.admitted_at + 0.002)  # its headers go out, before the redate ran
        assert len(a.admission._background) == 1
        clock.now += 0.002
        await a.drain()
        slot.mark_sent(slot.admitted_at + 0.001)  # later again: a new re-dating
        assert len(a.admission._background) == 1
        clock.now += 0.001
        await a.drain()
        (entry,) = await a.redis.client.zrange(a.admission.logs[0], 0, -1, withscores=True)
        assert entry[1] == pytest.approx(clock.now)
        slot.release()
        await close(a, b)

    asyncio.run(main())


def test_a_call_dated_by_its_late_answer_is_dated_that_far_before_redis_s_now():
    """A date already past (answer-dating) reaches Redis as its TIME less the same distance."""
    url, clock = redis_url(), ServerClock()

    async def main() -> None:
        a, b = two_processes(url, clock, requests_per_second=1, window_s=1)
        slot = await a.admit(1.0)
        assert isinstance(slot, RedisSlot)
        loop = asyncio.get_running_loop()
        sent_redis = clock.now
        slot.admitted_at = loop.time() - 0.09  # sent 90 ms ago here (as Redis saw it)
        clock.now += 0.09  # answered now: 40 ms later than the API's fastest round trip
        slot.mark_sent(loop.time() - 0.05)  # dated at the answer less that fastest trip
        assert slot.behind_s == pytest.approx(0.05, abs=1e-3)
        await a.drain()
        (entry,) = await a.redis.client.zrange(a.admission.logs[0], 0, -1, withscores=True)
        assert entry[1] == pytest.approx(sent_redis + 0.04, abs=1e-3)
        # B waits one (widened) window from that date.
        wait = await ask(b, "b1", 1.0)
        assert wait == pytest.approx(entry[1] + 1 + WINDOW_MARGIN - clock.now, abs=1e-6)
        slot.release()
        await close(a, b)

    asyncio.run(main())


def test_a_re_dating_never_moves_a_call_earlier():
    """The re-dating script keeps the later of two dates (ZADD GT), whatever order they come in."""
    url, clock = redis_url(), ServerClock()

    async def main() -> None:
        a, b = two_processes(url, clock, requests_per_second=1, window_s=1)
        slot = await a.admit(1.0)
        assert isinstance(slot, RedisSlot)
        clock.now += 0.3
        await a.redis.run_script("redate", a.admission.logs, [slot.key, a.redis.time_arg(), "0.0"])
        later = clock.now
        clock.now += 0.1  # then a date 0.2 s before Redis's now: earlier than the last one
        await a.redis.run_script("redate", a.admission.logs, [slot.key, a.redis.time_arg(), "0.2"])
        (entry,) = await a.redis.client.zrange(a.admission.logs[0], 0, -1, withscores=True)
        assert entry[1] == pytest.approx(later)
        slot.release()
        await close(a, b)

    asyncio.run(main())


def test_a_process_asks_redis_for_several_admissions_at_once():
    """Callers of one process do not wait for each other's round trip, up to ADMITTING."""
    url, clock = redis_url(), ServerClock()

    async def main() -> int:
        a, b = two_processes(url, clock, concurrency=10)
        inner = a.redis.run_script
        in_flight = peak = 0

        async def counting(name: str, keys: list[str], args: list[object]) -> object:
            nonlocal in_flight, peak
            if name != "admit":
                return await inner(name, keys, args)
            in_flight += 1
            peak = max(peak, in_flight)
            try:
                await asyncio.sleep(0)  # the others get their turn to ask meanwhile
                return await inner(name, keys, args)
            finally:
                in_flight -= 1

        a.redis.run_script = counting  # type: ignore[method-assign,assignment]
        slots = await asyncio.gather(*(a.admit(1.0) for _ in range(ADMITTING + 2)))
        for slot in slots:
            slot.release()
        await close(a, b)
        return peak

    assert asyncio.run(main()) == ADMITTING


def test_a_cancellation_lost_inside_the_redis_client_still_cancels_and_gives_back():
    """A caller cancelled while its admission was being sent is cancelled, not admitted.

    redis-py writes each command through ``asyncio.wait_for``, which before Python 3.12 can
    return a result that is ready instead of raising the caller's cancellation: the caller
    would go on and make its call. The admission notices, gives back what was admitted
    (here: the only concurrency slot) and raises.
    """
    url, clock = redis_url(), ServerClock()

    async def main() -> None:
        a, b = two_processes(url, clock, concurrency=1, tokens_per_second=100)
        inner = a.redis.run_script

        async def losing_the_cancel(name: str, keys: list[str], args: list[object]) -> object:
            result = await inner(name, keys, args)
            if name == "admit":
                task = asyncio.current_task()
                assert task is not None
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.sleep(0)  # swallowed, as wait_for does
            return result

        a.redis.run_script = losing_the_cancel  # type: ignore[method-assign,assignment]
        caller = asyncio.get_running_loop().create_task(a.admit(50))
        with pytest.raises(asyncio.CancelledError):
            await caller
        await a.drain()
        assert a.admission.in_flight == 0
        assert await ask(b, "b1", 100) is None  # the slot and the 50 tokens came back
        await close(a, b)

    asyncio.run(main())


def test_a_refund_settled_by_one_process_frees_tokens_for_another():
    """Settling below the estimate in A lets B's call in at once."""
    url, clock = redis_url(), ServerClock()

    async def main() -> None:
        a, b = two_processes(url, clock, tokens_per_second=100, window_s=1)
        slot = await a.admit(90)
        clock.now += 0.1  # past the pacer's spread
        assert await ask(b, "b1", 20) is not None
        slot.settle(10)
        await a.drain()
        assert await ask(b, "b2", 20) is None
        slot.release()
        await close(a, b)

    asyncio.run(main())


def test_a_retry_after_in_one_process_pauses_every_process():
    """A 5 s pause asked by A's answer holds B for exactly those 5 s of Redis's time."""
    url, clock = redis_url(), ServerClock()

    async def main() -> None:
        a, b = two_processes(url, clock, requests_per_second=100)
        a.pause_for(5)
        await a.drain()
        assert await ask(b, "b1", 1.0) == pytest.approx(5.0)
        clock.now += 5.0
        assert await ask(b, "b2", 1.0) is None
        await close(a, b)

    asyncio.run(main())


def test_a_budget_read_from_headers_in_one_process_holds_every_process():
    """OpenAI headers seen by A ('0 of 50 left, full in 2 s') pace B at their refill rate."""
    url, clock = redis_url(), ServerClock()
    headers = {
        "x-ratelimit-limit-requests": "50",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "2s",
    }

    async def main() -> None:
        # No requests limit of ours: the stated one is not adopted, its budget holds.
        a, b = two_processes(url, clock, tokens_per_second=1000)
        a.observe_headers(headers)
        await a.drain()
        wait = await ask(b, "b1", 1.0)
        assert wait == pytest.approx(1 / 25, abs=1e-3)  # 50 requests back over 2 s
        clock.now += 0.05
        assert await ask(b, "b2", 1.0) is None
        await close(a, b)

    asyncio.run(main())


def test_a_killed_processes_concurrency_slots_return_within_one_lease():
    """Slots held by a process that stopped renewing are free again one lease later."""
    url, clock = redis_url(), ServerClock()

    async def main() -> None:
        a, b = two_processes(url, clock, concurrency=2)
        assert await ask(a, "a1", 1.0) is None
        assert await ask(a, "a2", 1.0) is None  # then A is "killed": no release, no renewal
        assert await ask(b, "b1", 1.0) is not None
        clock.now += 9.9
        assert await ask(b, "b2", 1.0) is not None
        clock.now += 0.2  # 10.1 s: past the 10 s lease
        assert await ask(b, "b3", 1.0) is None
        await close(a, b)

    asyncio.run(main())


def test_a_released_slot_is_free_for_another_process_at_once():
    """Releasing a concurrency slot in A lets B in without waiting for the lease."""
    url, clock = redis_url(), ServerClock()

    async def main() -> None:
        a, b = two_processes(url, clock, concurrency=1)
        slot = await a.admit(1.0)
        assert await ask(b, "b1", 1.0) is not None
        slot.release()
        await a.drain()
        assert await ask(b, "b2", 1.0) is None
        await close(a, b)

    asyncio.run(main())


ANTHROPIC_RATES = (
    Rate(600, per="minute"),
    Rate(60_000, per="minute", unit="input_tokens"),  # 1,000 a bucket, 990 a second back
    Rate(12_000, per="minute", unit="output_tokens"),  # 200 a bucket, 198 a second back
)
ANTHROPIC: dict[str, Any] = {"rates": ANTHROPIC_RATES, "bucket_s": 1.0}


def test_token_buckets_are_shared_exactly_and_a_refused_call_books_nothing():
    """A takes the whole input bucket; B's 495 tokens wait the exact refill, reserve included.

    B's call must leave a fifth of the bucket in it (BUCKET_RESERVE): 495 + 200 refilled at
    990 a second, plus the 20 ms a call let in from a full bucket is booked late
    (BUCKET_LATE_S). B's refused attempt leaves every dimension's state as it was (one atomic
    script).
    """
    url, clock = redis_url(), ServerClock()

    async def main() -> None:
        a, b = two_processes(url, clock, **ANTHROPIC)
        await a.admit({"input_tokens": 1000, "output_tokens": 10})
        states = [k for k in a.keys if k.endswith(":state")]
        before = [await a.redis.client.hgetall(k) for k in states]
        wait = await ask(b, "b1", {"input_tokens": 495, "output_tokens": 10})
        expected = (495 + BUCKET_RESERVE * 1000) / 990 + BUCKET_LATE_S
        assert wait == pytest.approx(expected, abs=1e-6)
        assert [await a.redis.client.hgetall(k) for k in states] == before
        clock.now += expected
        assert await ask(b, "b2", {"input_tokens": 495, "output_tokens": 10}) is None
        await close(a, b)

    asyncio.run(main())


@pytest.mark.parametrize("first", [1000, 600, 150])
@pytest.mark.parametrize("second", [100, 495, 900, 1000])
def test_a_shared_bucket_waits_exactly_as_the_local_bucket(first: int, second: int):
    """The Redis bucket keeps the same rule as `TokenBucket`: the same wait, reserve and all.

    A call that leaves less than the reserve's share only waits for a full bucket.
    """
    url, clock = redis_url(), ServerClock()
    local = TokenBucket(
        rate_per_s=990.0,
        capacity=1000.0,
        late_s=BUCKET_LATE_S,
        reserve=BUCKET_RESERVE,
    )
    local.admit(clock.now, first)

    async def main() -> None:
        a, b = two_processes(url, clock, **ANTHROPIC)
        await a.admit({"input_tokens": first, "output_tokens": 10})
        wait = await ask(b, "b1", {"input_tokens": second, "output_tokens": 10})
        assert (wait or 0.0) == pytest.approx(local.wait_s(clock.now, second), abs=1e-6)
        await close(a, b)

    asyncio.run(main())


def test_output_tokens_are_a_debt_settled_for_every_process():
    """Output tokens are taken when answered, for every process: B waits out A's debt.

    A's call reserves 1,000 (its bound: nothing learned yet): the reservations, spread at the
    rate, hold B 800 / 198 s. Its answer produced 1,000, taken from the API's bucket as
    mirrored, a debt of 800: B then waits until it holds its margin (half of it) again.
    """
    url, clock = redis_url(), ServerClock()

    async def main() -> None:
        a, b = two_processes(url, clock, **ANTHROPIC)
        slot = await a.admit({"input_tokens": 10, "output_tokens": 1000})
        assert slot.settled["output_tokens"] == 1000
        wait = await ask(b, "b1", {"input_tokens": 10, "output_tokens": 50})
        assert wait == pytest.approx(800 / 198, abs=1e-6)
        slot.settle({"input_tokens": 10, "output_tokens": 1000})
        await a.drain()
        wait = await ask(b, "b2", {"input_tokens": 10, "output_tokens": 50})
        assert wait == pytest.approx(900 / 198, abs=1e-6)
        slot.release()
        await close(a, b)

    asyncio.run(main())


def test_estimated_output_reservations_need_room_in_every_process():
    """Reservations estimated (here a first guess of 60) need their own 60 among the spread.

    A books three calls of 60: 20 of the spread's 200 are left. B's call of 60 waits until 40
    more came back, 40 / 198 s, as the local limiter's (`SPREAD_ROOM`); a reservation of a
    call's bound would only need the spread above zero, and go at once.
    """
    url, clock = redis_url(), ServerClock()
    local = Limiter("api", **ANTHROPIC, output_estimate=60)
    local_bucket = local._constraints[2]

    async def main() -> None:
        a, b = two_processes(url, clock, **ANTHROPIC, output_estimate=60)
        cost = {"input_tokens": 10, "output_tokens": 1000}
        for _ in range(3):
            slot = await a.admit(cost)
            assert slot.settled["output_tokens"] == 60
            local_bucket.admit(clock.now, 60.0)
        wait = await ask(b, "b1", cost)
        assert wait == pytest.approx(40 / 198, abs=1e-6)
        assert wait == pytest.approx(local_bucket.wait_s(clock.now, 60.0), abs=1e-6)
        await close(a, b)

    asyncio.run(main())


def test_paced_limits_are_shared_at_their_pace():
    """Paced (no window, no bucket): B's first call waits one interval after A's, 1/(10 x 0.98)."""
    url, clock = redis_url(), ServerClock()

    async def main() -> None:
        a, b = two_processes(url, clock, requests_per_second=10)
        assert await ask(a, "a1") is None
        assert await ask(b, "b1") == pytest.approx(1 / (10 * (1 - PACED_MARGIN)), abs=1e-9)
        await close(a, b)

    asyncio.run(main())


def test_a_limit_adopted_from_headers_in_one_process_holds_every_process():
    """A reads "30,000 tokens a minute" (ours 60,000, over 1 s windows): B is held to it.

    B never saw the headers: it is held to 500 a window, and a call above that can never be
    admitted there.
    """
    url, clock = redis_url(), ServerClock()
    headers = {
        "x-ratelimit-limit-tokens": "30000",
        "x-ratelimit-remaining-tokens": "30000",
        "x-ratelimit-reset-tokens": "1s",
    }

    async def main() -> None:
        a, b = two_processes(url, clock, tokens_per_minute=60_000, window_s=1)
        a.observe_headers(headers)
        a.observe_headers(headers)  # seen again: nothing changes
        await a.drain()
        assert a.adopted == {"tokens": (60_000, 30_000)}
        adopted = a.admission.keys[3]
        assert await a.redis.client.hgetall(adopted) == {b"tokens/60": b"30000.0"}
        assert await ask(b, "b1", 400) is None
        clock.now += 0.1  # past the pacer's spread
        assert await ask(b, "b2", 200) is not None  # 600 > 500 in the window
        assert await ask(b, "b3", 100) is None
        with pytest.raises(ConfigError, match=r"600 tokens can never be admitted.*allows 500"):
            await ask(b, "b4", 600)
        # A higher figure later never replaces the lower one held.
        await a.redis.run_script("adopt", [adopted], ["tokens/60", "45000.0", "60"])
        assert await a.redis.client.hget(adopted, "tokens/60") == b"30000.0"
        await close(a, b)

    asyncio.run(main())


def test_an_adopted_limit_scales_a_shared_bucket_keeping_what_it_owes():
    """Input tokens adopted at half: the bucket B sees holds 500 and refills 495 a second."""
    url, clock = redis_url(), ServerClock()

    async def main() -> None:
        a, b = two_processes(url, clock, **ANTHROPIC)
        await a.admit({"input_tokens": 1000, "output_tokens": 10})  # empties the bucket
        field = "input_tokens/60"
        await a.redis.run_script("adopt", [a.admission.keys[3]], [field, "30000.0", "60"])
        # 1,000 owed at 990/s (booked 20 ms late: 19.8 more) is owed at 495/s: 500 fit once
        # it is all refilled.
        wait = await ask(b, "b1", {"input_tokens": 500, "output_tokens": 10})
        assert wait == pytest.approx((1000 + 990 * BUCKET_LATE_S) / 495, abs=1e-6)
        with pytest.raises(ConfigError, match=r"can never be admitted.*allows 500 input_tokens"):
            await ask(b, "b2", {"input_tokens": 600, "output_tokens": 10})
        await close(a, b)

    asyncio.run(main())


def test_a_quota_halt_in_one_process_halts_every_process():
    """A sees the quota exhausted: B's next admission raises QuotaExhausted, with A's message."""
    url, clock = redis_url(), ServerClock()

    async def main() -> None:
        a, b = two_processes(url, clock, requests_per_second=100)
        a.halt("credit balance too low")
        await a.drain()
        with pytest.raises(QuotaExhausted, match="credit balance too low"):
            await b.admit()
        assert b.halted is not None
        await close(a, b)

    asyncio.run(main())


@pytest.mark.parametrize(
    "limits",
    [
        {"requests_per_minute": 60, "window_s": 1, "bucket_s": 1},
        {"requests_per_minute": 30, "bucket_s": 1},
        {"tokens_per_second": 10, "bucket_s": 2},
        {"requests_per_minute": -1},
        {"requests_per_minute": 60, "output_estimate": 0},
        {"requests_per_minute": 60, "concurrency": 0},
    ],
)
def test_bad_settings_fail_as_they_do_for_a_local_limiter(limits):
    """The config validates for both: the same ConfigError, word for word."""
    with pytest.raises(ConfigError) as local:
        Limiter("api", **limits)
    with pytest.raises(ConfigError) as shared:
        RedisLimits("redis://127.0.0.1:1/0").limiter("api", **limits)
    assert str(shared.value) == str(local.value)


def test_a_config_is_shared_whole_and_not_with_more_arguments():
    config = Limiter("claude", bucket_s=1, output_estimate=300, rates=ANTHROPIC_RATES).config
    limits = RedisLimits("redis://127.0.0.1:1/0")
    assert limits.limiter(config).config is config
    with pytest.raises(ConfigError, match="not both"):
        RedisLimiter(config, redis=limits, window_s=1)
    with pytest.raises(ConfigError, match="per process"):
        RedisLimiter(dataclasses.replace(config, concurrency="auto"), redis=limits)
    with pytest.raises(ConfigError, match="needs its Redis"):
        RedisLimiter.from_config(config)


def test_redis_limiter_builds_a_shared_limiter_from_a_config_and_a_url():
    """What a benchmark's workers call: one config, one URL, one budget."""
    url = redis_url()
    config = Limiter("claude", bucket_s=1, rates=ANTHROPIC_RATES).config

    async def main() -> None:
        limiter = redis_limiter(config, url, prefix=f"conveyor-test:{uuid.uuid4().hex}")
        async with limiter.acquire({"input_tokens": 10, "output_tokens": 10}) as slot:
            slot.settle({"input_tokens": 10, "output_tokens": 3})
        assert limiter.admitted == 1
        await close(limiter)

    asyncio.run(main())


def test_share_limits_turns_an_apps_limiters_into_shared_ones():
    """`share_limits` keeps each limiter's name and limits, now held in Redis."""
    local = Limiter("api", requests_per_minute=600, window_s=1, concurrency=7)
    app = App(limiters=[local])
    limits = RedisLimits("redis://127.0.0.1:1/0")
    share_limits(app, limits)
    shared = app.limiter("api")
    assert isinstance(shared, RedisLimiter)
    assert shared.config is local.config
    assert shared.rates == local.rates
    assert (shared.window_s, shared.concurrency_limit) == (1, 7)
    with pytest.raises(ConfigError, match="per process"):
        limits.limiter("x", concurrency="auto")


def test_share_limits_keeps_buckets_dimensions_and_shares_auto_without_a_limit(caplog):
    """Every shape and dimension is shared as configured.

    concurrency="auto" (found per process) is shared without a concurrency limit, and the log
    says so.
    """
    claude = Limiter("claude", bucket_s=1, output_estimate=300, rates=ANTHROPIC_RATES)
    auto = Limiter("auto", requests_per_second=5, concurrency="auto")
    app = App(limiters=[claude, auto])
    with caplog.at_level("WARNING", logger="conveyor.limits"):
        share_limits(app, RedisLimits("redis://127.0.0.1:1/0"))
    shared = app.limiter("claude")
    assert isinstance(shared, RedisLimiter)
    assert shared.config is claude.config
    assert shared.admission.logs == []  # buckets keep no log
    shared_auto = app.limiter("auto")
    assert isinstance(shared_auto, RedisLimiter)
    assert shared_auto.concurrency_limit is None
    assert any("concurrency='auto'" in r.getMessage() for r in caplog.records)


def test_while_redis_is_down_admissions_wait_and_resume_when_it_is_back(caplog):
    """Redis stopped: an admission waits (no error), says why; restarted: it is admitted.

    Real time (a real server stops and starts), bounded: the admission must finish within
    3 s of the restart.
    """
    server = OwnRedis()
    server.start()

    async def main() -> None:
        limits = RedisLimits(server.url, prefix="conveyor-test")
        limiter = limits.limiter("api", requests_per_second=1000, window_s=1)
        first = await limiter.admit(1.0)
        first.release()
        server.stop()
        waiting = asyncio.get_running_loop().create_task(limiter.admit(1.0))
        await asyncio.sleep(0.5)
        assert not waiting.done()
        assert limiter.unavailable is not None
        assert server.url in limiter.unavailable
        server.start()
        started = time.monotonic()
        slot = await asyncio.wait_for(waiting, 3)
        assert time.monotonic() - started < 3
        assert limiter.unavailable is None
        slot.release()
        await limiter.drain()
        await limits.aclose()

    try:
        with caplog.at_level("WARNING", logger="conveyor.limits"):
            asyncio.run(main())
    finally:
        server.stop()
    messages = [r.getMessage() for r in caplog.records]
    assert any("unreachable" in m for m in messages)
    assert any("reachable again" in m for m in messages)


class DownRedis:
    """A Redis client whose server never answers: every script fails to connect."""

    def register_script(self, source: str) -> Any:
        async def call(keys: Any = None, args: Any = None) -> Any:
            import redis.exceptions

            raise redis.exceptions.ConnectionError("Error 111 connecting to cache:6379. Refused.")

        return call

    async def aclose(self) -> None:
        pass


PASSWORD = "hunter2-redis-password"  # noqa: S105 - a made-up test value


def test_an_unreachable_redis_is_reported_and_logged_without_its_password(run, caplog):
    """The outage reason (a job's step) and its log name the server, never the password."""
    limits = RedisLimits(f"redis://admin:{PASSWORD}@cache:6379/0", client=DownRedis())
    limiter = limits.limiter("api", requests_per_second=10)

    async def attempt() -> float | None:
        return await ask(limiter, "k", 1.0)

    with caplog.at_level("WARNING", logger="conveyor.limits"):
        wait = run(attempt())
    assert wait is not None
    assert limiter.unavailable is not None
    assert "redis://***@cache:6379/0 is unreachable" in limiter.unavailable
    assert PASSWORD not in limiter.unavailable
    assert "admin" not in limiter.unavailable
    assert PASSWORD not in limits.url
    assert caplog.records
    assert all(PASSWORD not in r.getMessage() for r in caplog.records)
