"""The circuit breaker's states, the automatic timeout, and adaptive concurrency, purely."""

import pytest

from conveyor import ConfigError
from conveyor.policy.adaptive import AdaptiveConcurrency, AutoTimeout
from conveyor.policy.breaker import CircuitBreaker


def test_breaker_opens_after_the_threshold_and_probes_after_the_cooldown():
    """closed → open after 3 failures → half-open after 10 s → closed after a good probe."""
    breaker = CircuitBreaker(failure_threshold=3, cooldown_s=10)
    for t in (0.0, 1.0):
        breaker.on_failure(t)
        assert breaker.state(t) == "closed"
    breaker.on_failure(2.0)
    assert breaker.state(2.0) == "open"
    assert breaker.wait_s(5.0) == 7.0
    assert breaker.state(12.0) == "half_open"
    assert breaker.wait_s(12.0) == 0.0
    breaker.on_start(12.0)
    assert breaker.wait_s(12.0) == 10.0  # one probe at a time
    breaker.on_success(12.5)
    assert breaker.state(12.5) == "closed"


def test_a_failed_probe_opens_the_circuit_again():
    """A probe that fails re-opens at once, for a full cooldown."""
    breaker = CircuitBreaker(failure_threshold=1, cooldown_s=5)
    breaker.on_failure(0.0)
    breaker.on_start(5.0)
    breaker.on_failure(5.5)
    assert breaker.state(6.0) == "open"
    assert breaker.wait_s(6.0) == pytest.approx(4.5)


def test_a_success_resets_the_count():
    """Failures must be consecutive to open the circuit."""
    breaker = CircuitBreaker(failure_threshold=2, cooldown_s=5)
    breaker.on_failure(0.0)
    breaker.on_success(0.1)
    breaker.on_failure(0.2)
    assert breaker.state(0.2) == "closed"


@pytest.mark.parametrize("kwargs", [{"failure_threshold": 0}, {"cooldown_s": 0}])
def test_bad_breaker_settings_are_refused(kwargs):
    """Thresholds below 1 and cooldowns of 0 are refused by name."""
    with pytest.raises(ConfigError, match=next(iter(kwargs))):
        CircuitBreaker(**kwargs)


def test_auto_timeout_follows_the_p95():
    """After the warm-up the timeout is 4 x p95 of recent successes, floored at min_s."""
    auto = AutoTimeout(initial_s=30, warmup=20)
    assert auto.timeout_s() == 30
    changed = [auto.observe(0.05 + i * 0.001) for i in range(20)]
    assert changed[-1] is True
    assert not any(changed[:-1])
    assert auto.timeout_s() == pytest.approx(4 * 0.068)
    fast = AutoTimeout(warmup=5, min_s=0.05)
    for _ in range(5):
        fast.observe(0.001)
    assert fast.timeout_s() == 0.05


def _converge(policy: AdaptiveConcurrency, capacity: int, rounds: int) -> list[int]:
    """Drive the policy with a server that queues beyond `capacity` (latency grows)."""
    limits = []
    for _ in range(rounds):
        in_flight = policy.limit
        latency = 0.1 * max(1.0, in_flight / capacity)
        for _ in range(in_flight):
            policy.on_success(latency, in_flight)
        limits.append(policy.limit)
    return limits


def test_adaptive_concurrency_finds_the_capacity_and_follows_it_down():
    """It climbs to near the server's capacity, then backs off when the capacity halves."""
    policy = AdaptiveConcurrency(min_limit=1, max_limit=200)
    limits = _converge(policy, capacity=40, rounds=400)
    settled = limits[-100:]
    # A sawtooth around the capacity: it climbs by one a round and steps down on inflation.
    assert 0.6 * 40 <= sum(settled) / len(settled) <= 1.6 * 40
    assert min(settled) >= 0.5 * 40
    limits = _converge(policy, capacity=20, rounds=300)
    settled = limits[-100:]
    assert 0.6 * 20 <= sum(settled) / len(settled) <= 1.6 * 20


def test_adaptive_concurrency_halves_on_push_back_within_bounds():
    """A 429 halves the limit once per round of calls, never below the minimum."""
    policy = AdaptiveConcurrency(min_limit=3, max_limit=50, initial=40)
    policy.on_overload()
    assert policy.limit == 20
    for _ in range(19):  # the rest of this round's push-backs count as one
        policy.on_overload()
    assert policy.limit == 20
    for _ in range(10):
        for _ in range(policy.limit + 1):
            policy.on_overload()
    assert policy.limit == 3
