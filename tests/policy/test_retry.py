"""The retry policy's validation and its pure decision."""

import doctest

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conveyor import (
    AttemptTimeout,
    Classifier,
    ConfigError,
    DeadlineExceeded,
    Retry,
    RetryAfter,
    Verdict,
    rule_for,
)
from conveyor.policy import retry as retry_module
from conveyor.policy.retry import decide, is_transient


class Status(Exception):
    def __init__(self, status_code: int) -> None:
        super().__init__(f"HTTP {status_code}")
        self.status_code = status_code


class NetworkError(Exception):
    """Named like httpx's transport errors, which Conveyor recognises by name."""


class ConnectError(NetworkError):
    pass


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (RetryAfter(1), True),
        (AttemptTimeout(1), True),
        (TimeoutError(), True),
        (ConnectionResetError(), True),
        (ConnectError("refused"), True),
        (Status(429), True),
        (Status(503), True),
        (Status(400), False),
        (Status(501), False),
        (DeadlineExceeded(1, 2), False),
        (ValueError("bad"), False),
        (KeyError("k"), False),
    ],
)
def test_default_retryable_errors(exc, transient):
    """By default only errors that may pass (timeouts, connections, 429/5xx) are retried."""
    assert is_transient(exc) is transient


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"attempts": 0}, "attempts"),
        ({"attempts": 1.5}, "attempts"),
        ({"attempts": True}, "attempts"),
        ({"base_delay_s": 0}, "base_delay_s"),
        ({"base_delay_s": float("nan")}, "base_delay_s"),
        ({"max_delay_s": -1}, "max_delay_s"),
        ({"base_delay_s": 5, "max_delay_s": 1}, "max_delay_s"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"deadline_s": -3}, "deadline_s"),
        ({"on": "ValueError"}, "on"),
        ({"on": ()}, "on"),
        ({"on": (ValueError, int)}, "on"),
        ({"rng": object()}, "rng"),
        ({"classifier": is_transient}, "classifier"),
        ({"classifier": Classifier(), "on": ValueError}, "on=<class 'ValueError'>, classifier"),
    ],
)
def test_bad_policy_is_refused_by_name(kwargs, named):
    """A wrong value fails at construction with a message naming the argument."""
    with pytest.raises(ConfigError, match=named):
        Retry(**kwargs)


def test_on_accepts_types_tuples_and_predicates():
    """`on` may be a type, a tuple of types, or a predicate."""
    assert Retry(on=KeyError).retryable(KeyError())
    assert not Retry(on=KeyError).retryable(ValueError())
    assert Retry(on=(KeyError, ValueError)).retryable(ValueError())
    assert Retry(on=lambda e: "again" in str(e)).retryable(Exception("try again"))


def _decide(policy: Retry, exc: BaseException, attempt: int = 1, elapsed_s: float = 0.0):
    return decide(policy, attempt=attempt, exc=exc, elapsed_s=elapsed_s, now_wall_s=0.0, u=0.5)


def test_not_retryable_gives_up_at_once():
    """An error outside `on` is not retried, whatever attempts remain."""
    decision = _decide(Retry(attempts=5), ValueError("bad input"))
    assert (decision.retry, decision.reason) == (False, "not retryable")


def test_last_attempt_gives_up():
    """The attempts count includes the first: attempts=3 allows two retries."""
    policy = Retry(attempts=3)
    assert _decide(policy, TimeoutError(), attempt=2).retry
    decision = _decide(policy, TimeoutError(), attempt=3)
    assert not decision.retry
    assert decision.reason == "gave up after 3 attempt(s)"


def test_backoff_uses_the_sample():
    """Without a hint the delay is full jitter: u times the doubled base."""
    policy = Retry(attempts=5, base_delay_s=1.0, max_delay_s=60.0)
    assert _decide(policy, TimeoutError(), attempt=3).delay_s == 0.5 * 4.0


def test_hint_overrides_backoff():
    """A retry-after hint replaces the backoff, even above its cap."""
    policy = Retry(attempts=5, base_delay_s=0.1, max_delay_s=1.0)
    decision = _decide(policy, RetryAfter(30))
    assert (decision.retry, decision.delay_s) == (True, 30.0)


def test_deadline_stops_retries_that_could_not_start_in_time():
    """No retry is scheduled to start at or after the item's deadline."""
    policy = Retry(attempts=5, deadline_s=10.0)
    assert _decide(policy, RetryAfter(4), elapsed_s=5.9).retry
    decision = _decide(policy, RetryAfter(4), elapsed_s=6.0)
    assert not decision.retry
    assert "deadline_s=10" in decision.reason


@given(
    attempt=st.integers(min_value=1, max_value=50),
    u=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
    elapsed=st.floats(min_value=0.0, max_value=1000.0),
)
def test_decisions_respect_every_bound(attempt, u, elapsed):
    """Any retry decided has a delay within the cap and starts before the deadline."""
    policy = Retry(attempts=10, base_delay_s=0.5, max_delay_s=8.0, deadline_s=100.0)
    d = decide(policy, attempt=attempt, exc=TimeoutError(), elapsed_s=elapsed, now_wall_s=0, u=u)
    if d.retry:
        assert attempt < policy.attempts
        assert 0.0 <= d.delay_s <= 8.0
        assert elapsed + d.delay_s < 100.0


class SlowDown(Exception):
    """A user's SDK's throttle: no status, no header, nothing the built-in reading knows."""


class Body400(Exception):
    def __init__(self, code: str) -> None:
        super().__init__("HTTP 400")
        self.status_code = 400
        self.code = code


def quota_in_body(exc: BaseException) -> Verdict | None:
    if isinstance(exc, Body400) and exc.code == "monthly_quota":
        return Verdict("quota")
    return None


MINE = Classifier(
    rules=(
        rule_for(SlowDown, "rate_limited", retry_after_s=2.0),
        quota_in_body,
        rule_for(lambda exc: isinstance(exc, Status) and exc.status_code == 429, "permanent"),
    )
)


@pytest.mark.parametrize(
    ("exc", "retry", "delay_s"),
    [
        (SlowDown(), True, 2.0),  # the rule's wait, not a backoff
        (Body400("monthly_quota"), False, 0.0),
        (Status(429), False, 0.0),  # a rule may also refuse what the built-in reading retries
        (Status(503), True, 0.5 * 0.1),  # no rule: the built-in reading, and a backoff
    ],
)
def test_a_classifier_decides_what_is_retried_and_the_wait(exc, retry, delay_s):
    """Retry(classifier=...) retries by the verdict and waits what the verdict names."""
    decision = _decide(Retry(attempts=5, classifier=MINE), exc)
    assert (decision.retry, decision.delay_s) == (retry, delay_s)
    assert Retry(attempts=5, classifier=MINE).retryable(exc) is retry


def test_without_a_classifier_the_rules_do_not_apply():
    """The default Retry does not know SlowDown: rules live in the classifier given, only."""
    assert not _decide(Retry(attempts=5), SlowDown()).retry


def test_a_verdicts_wait_is_used_and_capped_at_a_day():
    """The built-in reading's waits count too (Google's RetryInfo); a rule's is capped."""
    google = Status(429)
    google.body = {  # type: ignore[attr-defined]
        "error": {
            "status": "RESOURCE_EXHAUSTED",
            "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "31s"}],
        }
    }
    assert _decide(Retry(attempts=5), google).delay_s == 31.0
    forever = Classifier(rules=(rule_for(SlowDown, "rate_limited", retry_after_s=1e9),))
    assert Retry(classifier=forever).wait_s(SlowDown(), now_wall_s=0.0) == 86_400.0


def test_a_rule_that_answers_nonsense_names_itself_in_the_decision():
    """The engine reports a policy that raises; the message names the rule."""

    def broken(exc: BaseException) -> Verdict | None:
        return "retry please"  # type: ignore[return-value]

    policy = Retry(attempts=5, classifier=Classifier(rules=(broken,)))
    with pytest.raises(ConfigError, match=r"rule .*broken answered 'retry please'"):
        _decide(policy, SlowDown())


def test_docstring_examples():
    """The examples of `check_retry` and `check_callable` run and hold."""
    assert doctest.testmod(retry_module).failed == 0
