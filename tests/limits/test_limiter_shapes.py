"""Token buckets and cost dimensions through the limiter, on virtual time."""

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor import ConfigError, Limiter, Rate
from conveyor.limits.constraints import BUCKET_LATE_S, BUCKET_MARGIN, BUCKET_RESERVE
from conveyor.limits.spec import LimiterConfig
from conveyor.mockapi.bucket import MessagesLimiter
from conveyor.testing import VirtualClock

plans = st.lists(
    st.tuples(
        st.floats(min_value=0.0, max_value=0.5),  # arrival gap
        st.integers(min_value=1, max_value=500),  # input tokens
        st.integers(min_value=1, max_value=400),  # output tokens really produced
        st.floats(min_value=0.0, max_value=2.0),  # latency
    ),
    min_size=1,
    max_size=30,
)


def _anthropic() -> Limiter:
    # 60 requests, 30,000 input and 6,000 output tokens a minute; buckets of 2 s.
    return Limiter(
        "claude",
        requests_per_minute=60,
        input_tokens_per_minute=30_000,
        output_tokens_per_minute=6_000,
        bucket_s=2.0,
    )


def _run(
    limiter: Limiter, plan, events: list[tuple[str, float, int]] | None = None
) -> list[tuple[float, int, float, int]]:
    """(admitted at, input, answered at, output) per call; each settles its usage.

    `events` gets ("admit", time, input) and ("answer", time, output) in the order they
    happened.
    """
    clock = VirtualClock()
    done: list[tuple[float, int, float, int]] = []
    log = events if events is not None else []

    async def caller(at: float, inp: int, out: int, latency: float) -> None:
        await asyncio.sleep(at)
        async with limiter.acquire({"input_tokens": inp, "output_tokens": 1024}) as slot:
            start = clock.now
            log.append(("admit", start, inp))
            await asyncio.sleep(latency)
            log.append(("answer", clock.now, out))
            slot.settle({"input_tokens": inp, "output_tokens": out})
            done.append((start, inp, clock.now, out))

    async def main() -> None:
        at = 0.0
        tasks = []
        for gap, inp, out, latency in plan:
            at += gap
            tasks.append(asyncio.create_task(caller(at, inp, out, latency)))
        await asyncio.gather(*tasks)

    clock.run(main())
    return done


@settings(max_examples=100, deadline=None)
@given(plan=plans)
def test_the_api_s_buckets_never_refuse_a_call_the_limiter_admits(plan):
    """Replayed against the mock API's buckets (written apart), the API never refuses a call.

    Every call arrives when the API holds its request and input, and output above zero. The
    API takes requests and input as a call arrives and output as its answer is written;
    the limiter admits at the start of each call and settles at its answer.
    """
    events: list[tuple[str, float, int]] = []
    done = _run(_anthropic(), plan, events)
    assert len(done) == len(plan)
    api = MessagesLimiter(rpm=60, itpm=30_000, otpm=6_000, burst_s=2.0)
    for kind, at, tokens in events:
        if kind == "admit":
            assert api.try_admit(at, input_tokens=tokens).admitted, (at, tokens)
        else:
            api.settle_output(at, output_tokens=tokens)


def test_a_bucket_limiter_paces_at_the_rate_after_its_burst():
    """Ten callers, 60 a minute in buckets of 2 s: two go almost at once, then one a second."""
    clock = VirtualClock()
    limiter = Limiter("api", requests_per_minute=60, bucket_s=2.0)
    starts: list[float] = []

    async def one() -> None:
        async with limiter.acquire():
            starts.append(clock.now)

    async def main() -> None:
        await asyncio.gather(*(one() for _ in range(10)))

    clock.run(main())
    # A call let in from a full bucket is taken as of BUCKET_LATE_S later (the API's bucket,
    # still full until it sees the call, wastes that refill), and each call leaves
    # BUCKET_RESERVE of the bucket in it: the second waits for that much refill too.
    gap = 1.0 / (1.0 - BUCKET_MARGIN)
    late, kept = BUCKET_LATE_S, BUCKET_RESERVE * 2
    expected = [0.0] + [late + gap * (k - 1 + kept) for k in range(1, 10)]
    assert starts == pytest.approx(expected, abs=1e-6)


def test_input_and_output_are_separate_budgets():
    """A call short of output waits for output, not input; small inputs pass large ones."""
    clock = VirtualClock()
    limiter = Limiter(
        "claude", input_tokens_per_minute=60_000, output_tokens_per_minute=600, bucket_s=1.0
    )

    async def main() -> list[float]:
        starts = []
        for _ in range(3):
            async with limiter.acquire({"input_tokens": 10, "output_tokens": 20}) as slot:
                starts.append(clock.now)
                slot.settle({"input_tokens": 10, "output_tokens": 20})
        return starts

    # Output: 10 a second, a bucket of 10. A call needs the bucket to hold its margin (its
    # reservation, at most half the bucket: 5); its 20 are taken when it answers, leaving the
    # bucket 10 short: the next waits for 15 to refill, the one after for 20.
    rate = 10 * (1 - BUCKET_MARGIN)
    starts = clock.run(main())
    assert starts[0] == 0.0
    assert starts[1] == pytest.approx(15 / rate, abs=1e-6)
    assert starts[2] == pytest.approx(15 / rate + 20 / rate, abs=1e-6)


def test_output_is_reserved_by_what_answers_produce_once_some_were_seen():
    """After three answers of 100 tokens under max_tokens=1,000, a call reserves 100."""
    clock = VirtualClock()
    limiter = Limiter("claude", output_tokens_per_minute=6_000_000, bucket_s=1.0)

    async def main() -> list[float]:
        reserved = []
        for _ in range(10):
            async with limiter.acquire({"output_tokens": 1000}) as slot:
                reserved.append(slot.settled["output_tokens"])
                slot.settle({"output_tokens": 100})
        return reserved

    reserved = clock.run(main())
    assert reserved[:3] == [1000.0] * 3
    assert reserved[3:] == [100.0] * 7


def test_calls_queued_before_anything_was_learned_reserve_what_was_learned_since():
    """Calls that queued with their bound (1,000) reserve the learned 10 once admitted.

    Fifty calls arrive at once, before any answer: each would reserve its bound, and a bound
    of 1,000 holds the output bucket (100 a second) for ten seconds. The first answers come
    0.1 s later with 10 tokens each: the calls still waiting are admitted at the reservation
    learned since, 10 calls a second, not one every ten seconds.
    """
    clock = VirtualClock()
    limiter = Limiter("claude", output_tokens_per_minute=6_000, bucket_s=1.0)
    reserved: list[float] = []

    async def one() -> None:
        async with limiter.acquire({"output_tokens": 1000}) as slot:
            reserved.append(slot.settled["output_tokens"])
            await asyncio.sleep(0.1)
            slot.settle({"output_tokens": 10})

    async def main() -> None:
        await asyncio.gather(*(one() for _ in range(50)))

    clock.run(main())
    assert reserved.count(1000.0) <= 3
    assert reserved[-1] == 10.0
    assert clock.now < 8.0  # 500 tokens of output at 100 a second, with the first burst


def test_a_cost_that_never_fits_fails_at_once_and_names_the_fix():
    limiter = Limiter("claude", input_tokens_per_minute=30_000, bucket_s=1.0)
    with pytest.raises(ConfigError, match=r"600 input_tokens can never be admitted.*500"):
        limiter.acquire({"input_tokens": 600})
    with pytest.raises(ConfigError, match=r"names no 'input_tokens'"):
        limiter.acquire({"tokens": 10})


def test_several_dimensions_need_the_cost_per_dimension():
    limiter = Limiter(
        "claude", input_tokens_per_minute=30_000, output_tokens_per_minute=8_000, bucket_s=1.0
    )
    with pytest.raises(ConfigError, match=r"cost=\{'input_tokens': \.\.\., 'output_tokens'"):
        limiter.acquire(100)


def test_an_output_limit_without_a_bound_or_a_guess_fails_with_the_fix():
    limiter = Limiter("claude", output_tokens_per_minute=8_000, bucket_s=1.0)
    with pytest.raises(ConfigError, match="output_estimate="):
        limiter.acquire({"input_tokens": 10})
    guessed = Limiter("claude", output_tokens_per_minute=8_000, bucket_s=1.0, output_estimate=50)
    assert guessed.acquire({"input_tokens": 10}) is not None


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"requests_per_minute": 50, "bucket_s": 1.0}, r"holds 0\.83 requests.*bucket_s >= 1\.2"),
        ({"requests_per_minute": 50, "bucket_s": 1.0, "window_s": 1.0}, "not both"),
        ({"requests_per_minute": 50, "bucket_s": -1}, "bucket_s=-1"),
        ({"requests_per_minute": 50, "output_estimate": 0}, "output_estimate=0"),
    ],
)
def test_settings_that_can_never_hold_fail_at_construction(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        Limiter("api", **kwargs)


def test_a_dimension_is_a_lower_case_name():
    with pytest.raises(ConfigError, match="lower-case name of your own"):
        Rate(5, unit="Bad Unit")


def test_a_config_is_a_frozen_value_a_limiter_can_be_built_from():
    config = LimiterConfig(
        name="claude",
        rates=(Rate(50, unit="requests"), Rate(30_000, unit="input_tokens")),
        bucket_s=1.2,
    )
    with pytest.raises(AttributeError):
        config.bucket_s = 2.0  # type: ignore[misc]
    limiter = Limiter.from_config(config)
    assert limiter.config is config
    assert config.shape == "bucket"
    assert config.dimensions == ("requests", "input_tokens")
    same = Limiter("claude", rates=[Rate(50), Rate(30_000, unit="input_tokens")], bucket_s=1.2)
    assert same.config == config


def test_from_config_takes_a_breaker_and_a_classifier_and_refuses_any_other_keyword():
    """A limit given beside the config, or a misspelt keyword, is named, not dropped."""
    config = LimiterConfig(name="api", rates=(Rate(60),))
    assert Limiter.from_config(config, breaker=False).learning.breaker is None
    assert Limiter.from_config(config).learning.breaker is not None
    with pytest.raises(ConfigError, match=r"requests_per_minute=\.\.\.\): it takes breaker="):
        Limiter.from_config(config, requests_per_minute=5)  # type: ignore[call-arg]
    with pytest.raises(ConfigError, match=r"clasifier="):
        Limiter.from_config(config, clasifier=None)  # type: ignore[call-arg]


def test_anthropic_headers_teach_each_dimension_its_own_limit():
    """The API states 40,000 input (ours 50,000) and 8,000 output (ours too): input adopted."""
    clock = VirtualClock()
    limiter = Limiter(
        "claude", input_tokens_per_minute=50_000, output_tokens_per_minute=8_000, bucket_s=1.0
    )
    headers = {
        "anthropic-ratelimit-input-tokens-limit": "40000",
        "anthropic-ratelimit-input-tokens-remaining": "39000",
        "anthropic-ratelimit-input-tokens-reset": "2026-12-06T00:00:01Z",
        "anthropic-ratelimit-output-tokens-limit": "8000",
        "anthropic-ratelimit-output-tokens-remaining": "0",
        "anthropic-ratelimit-output-tokens-reset": "2026-12-06T00:00:01Z",
    }

    async def main() -> None:
        async with limiter.acquire({"input_tokens": 100, "output_tokens": 10}) as slot:
            slot.observe(headers)

    clock.run(main())
    limits = {r.unit: r.limit for r in limiter.rates}
    assert limits == {"input_tokens": pytest.approx(40_000), "output_tokens": 8_000}


def test_both_limiters_implement_the_protocol_the_engine_uses():
    from conveyor.limits.protocol import Limit, Ticket
    from conveyor.limits.redis_limiter import RedisLimiter, RedisSlot
    from conveyor.limits.slot import Slot

    assert isinstance(Limiter("api", requests_per_minute=5), Limit)
    for cls in (Limiter, RedisLimiter):
        for verb in ("admit", "acquire", "learn_from_error", "limits_tokens"):
            assert hasattr(cls, verb), (cls, verb)
    for ticket in (Slot, RedisSlot):
        for verb in ("mark_sent", "mark_answered", "observe", "settle", "release", "give_back"):
            assert callable(getattr(ticket, verb)), (ticket, verb)
    assert Ticket is not None


def test_the_limiter_reads_errors_with_the_user_s_rules():
    """A rule saying an SDK's SlowDown is a rate limit of 3 s pauses every sharer 3 s."""
    from conveyor import Classifier, rule_for

    class SlowDown(Exception):
        pass

    rules = Classifier(rules=(rule_for(SlowDown, "rate_limited", retry_after_s=3.0),))
    limiter = Limiter("api", requests_per_second=100, classifier=rules)
    plain = Limiter("api", requests_per_second=100)

    def next_start(lim: Limiter) -> float:
        clock = VirtualClock()

        async def main() -> float:
            with pytest.raises(SlowDown):
                async with lim.acquire():
                    raise SlowDown
            async with lim.acquire():
                return clock.now

        return clock.run(main())

    assert next_start(limiter) == pytest.approx(3.0)
    assert next_start(plain) < 0.1  # unknown to the built-in reading: no pause
    with pytest.raises(ConfigError, match=r"conveyor\.Classifier"):
        Limiter("api", requests_per_second=1, classifier=lambda e: None)  # type: ignore[arg-type]


def test_a_failed_call_gives_back_the_output_it_reserved():
    """A 529 or a dropped connection produced no answer: its output reservation comes back."""
    clock = VirtualClock()
    limiter = Limiter("claude", output_tokens_per_minute=600, bucket_s=1.0)

    async def main() -> float:
        with pytest.raises(ConnectionError):
            async with limiter.acquire({"output_tokens": 100}):
                raise ConnectionError
        async with limiter.acquire({"output_tokens": 100}):
            return clock.now

    # Kept, the 100 reserved would hold the next call ~9 s (10 a second, a bucket of 10).
    assert clock.run(main()) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"requests_per_second": 100, "window_s": 1.0},
        {"requests_per_second": 100, "bucket_s": 1.0},
        {"requests_per_second": 100},
    ],
)
def test_a_stated_limit_too_low_for_one_call_still_admits_one(kwargs):
    """Ours 100 a second, the API states 50 a minute: one a window (bucket, second), not none.

    Adopted as is, 0.83 a second leaves no call admissible ever ("can never be admitted").
    """
    clock = VirtualClock()
    limiter = Limiter("api", **kwargs)
    headers = {"x-ratelimit-limit-requests": "50", "x-ratelimit-remaining-requests": "49"}

    async def main() -> float:
        async with limiter.acquire() as slot:
            slot.observe(headers)
        async with limiter.acquire():
            return clock.now

    clock.run(main())
    assert limiter.rates[0].limit == pytest.approx(1.0)  # per second
