"""The limiters' state, read at scrape time: admitted, waiting, utilisation, push-backs."""

import asyncio

import pytest

from conveyor.jobs import App
from conveyor.limits.limiter import Limiter
from conveyor.metrics import Metrics

from .kit import Scrape


class StatusError(Exception):
    """An API's error carrying its HTTP status, as the SDKs' errors do."""

    def __init__(self, status_code: int) -> None:
        super().__init__(f"HTTP {status_code}")
        self.status_code = status_code


def test_admitted_in_flight_waiting_and_utilisation_are_what_the_limiter_holds(run):
    """10/s over a 1 s window: 5 admitted and held, 2 more over concurrency 5 wait; 0.5 used."""
    limiter = Limiter("api", requests_per_second=10, window_s=1, concurrency=5)
    metrics = Metrics(app=App(limiters=[limiter]))

    async def main() -> bytes:
        slots = [await limiter.admit() for _ in range(5)]
        waiters = [asyncio.create_task(limiter.admit()) for _ in range(2)]
        await asyncio.sleep(0)  # the waiters queue
        body = (await metrics.render())[0]
        for slot in slots:
            slot.release()
        for slot in await asyncio.gather(*waiters):
            slot.release()
        return body

    scrape = Scrape(run(main()))
    assert scrape.value("conveyor_limiter_admitted_total", limiter="api") == 5
    assert scrape.value("conveyor_limiter_in_flight", limiter="api") == 5
    assert scrape.value("conveyor_limiter_waiting", limiter="api") == 2
    assert scrape.value("conveyor_limiter_concurrency_limit", limiter="api") == 5
    used = scrape.value("conveyor_limiter_utilisation_ratio", limiter="api", dimension="requests")
    assert used == pytest.approx(0.5)
    limit = {"limiter": "api", "dimension": "requests", "period_seconds": "1"}
    assert scrape.value("conveyor_limiter_limit", **limit) == 10


def test_push_backs_are_counted_by_kind_and_a_pause_shows(run):
    """Two 429s and one 503: rate_limited 2, overloaded 1; a Retry-After pauses the limiter."""
    limiter = Limiter("api", requests_per_minute=600)
    metrics = Metrics(app=App(limiters=[limiter]))

    async def main() -> bytes:
        limiter.learn_from_error(StatusError(429))
        limiter.learn_from_error(StatusError(429))
        limiter.learn_from_error(StatusError(503))
        limiter.pause_for(5.0)
        return (await metrics.render())[0]

    scrape = Scrape(run(main()))
    kinds = {"limiter": "api"}
    assert scrape.value("conveyor_limiter_pushbacks_total", **kinds, kind="rate_limited") == 2
    assert scrape.value("conveyor_limiter_pushbacks_total", **kinds, kind="overloaded") == 1
    assert scrape.value("conveyor_limiter_paused", limiter="api") == 1
    assert scrape.value("conveyor_limiter_halted", limiter="api") == 0


def test_the_apis_remaining_is_what_its_headers_last_said(run):
    """OpenAI's headers say 42 requests and 9000 tokens left: the gauges say so, per dimension."""
    limiter = Limiter("openai", requests_per_minute=500, tokens_per_minute=200_000)
    metrics = Metrics(app=App(limiters=[limiter]))
    headers = {
        "x-ratelimit-limit-requests": "500",
        "x-ratelimit-remaining-requests": "42",
        "x-ratelimit-reset-requests": "1s",
        "x-ratelimit-limit-tokens": "200000",
        "x-ratelimit-remaining-tokens": "9000",
        "x-ratelimit-reset-tokens": "3s",
    }

    async def main() -> bytes:
        limiter.observe_headers(headers)
        return (await metrics.render())[0]

    scrape = Scrape(run(main()))
    remaining = "conveyor_limiter_api_remaining"
    assert scrape.value(remaining, limiter="openai", dimension="requests") == 42
    assert scrape.value(remaining, limiter="openai", dimension="tokens") == 9000


def test_a_quota_exhausted_halts_and_shows(run):
    """After the API said the quota is used up, conveyor_limiter_halted is 1."""
    limiter = Limiter("api", requests_per_minute=600)
    metrics = Metrics(app=App(limiters=[limiter]))

    async def main() -> bytes:
        limiter.halt("insufficient_quota")
        return (await metrics.render())[0]

    assert Scrape(run(main())).value("conveyor_limiter_halted", limiter="api") == 1


@pytest.mark.parametrize(
    ("kwargs", "admits", "expected"),
    [
        # A bucket of 1 s at 10/s holds 10: 4 taken, and the 20 ms a call from a full bucket
        # is taken late (BUCKET_LATE_S) at the bucket's 9.9/s (its 1% margin): 4.198 of 10.
        ({"requests_per_second": 10, "bucket_s": 1}, 4, (4 + 0.02 * 9.9) / 10),
        # Paced at 60/min with a burst of 4: 2 booked ahead, of the 5 a caller may book.
        ({"requests_per_minute": 60, "burst": 4}, 2, 0.4),
    ],
)
def test_utilisation_in_the_other_shapes(run, kwargs, admits, expected):
    """A bucket's and a paced limit's utilisation: 0 idle, the share booked after admissions."""
    limiter = Limiter("api", **kwargs)

    async def main() -> tuple[dict[str, float], dict[str, float]]:
        idle = limiter.utilisation()
        for _ in range(admits):
            (await limiter.admit()).release()
        return idle, limiter.utilisation()

    idle, used = run(main())
    assert idle == {"requests": 0.0}
    assert used["requests"] == pytest.approx(expected, abs=1e-6)


def test_a_limiter_kept_in_redis_shows_its_waiting_callers_and_no_utilisation():
    """Redis: a caller waiting for the one slot counts until it gives up; utilisation is not known.

    Against the local Redis on real time: the caller is counted before its first Redis call.
    """
    import uuid

    from conveyor.limits.redis_limiter import RedisLimits

    from ..services import redis_url

    async def main() -> tuple[int, int, dict[str, float]]:
        limits = RedisLimits(redis_url(), prefix=f"conveyor-test:{uuid.uuid4().hex}")
        limiter = limits.limiter("api", requests_per_second=100, concurrency=1)
        try:
            slot = await limiter.admit()
            waiter = asyncio.create_task(limiter.admit())
            await asyncio.sleep(0)  # the waiter runs up to its first call to Redis
            waiting = limiter.waiting
            waiter.cancel()
            await asyncio.gather(waiter, return_exceptions=True)
            slot.release()
            return waiting, limiter.waiting, limiter.utilisation()
        finally:
            await limiter.drain()
            await limits.aclose()

    assert asyncio.run(main()) == (1, 0, {})
