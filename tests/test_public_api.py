"""The public surface: small, explicit, and importable as documented."""

import conveyor
import conveyor.testing

EXPECTED = {
    "App",
    "AttemptTimeout",
    "Job",
    "JobOptions",
    "Jobs",
    "TaskContext",
    "Worker",
    "CircuitBreaker",
    "CircuitOpen",
    "Classifier",
    "Limiter",
    "LimiterConfig",
    "Rate",
    "Slot",
    "ConfigError",
    "ConveyorError",
    "DeadlineExceeded",
    "Event",
    "Interrupted",
    "InvalidAnswer",
    "ItemFinished",
    "ItemRetrying",
    "ItemStarted",
    "Outcome",
    "QuotaExhausted",
    "Report",
    "Retry",
    "RetryAfter",
    "RunFinished",
    "SourceError",
    "Stream",
    "Summary",
    "Verdict",
    "attempt_slot",
    "is_transient",
    "map",
    "rule_for",
    "run_sync",
    "stream",
}


def test_all_is_exactly_the_documented_surface():
    """__all__ names exactly the public API, and each name resolves."""
    assert set(conveyor.__all__) == EXPECTED
    for name in EXPECTED:
        assert getattr(conveyor, name) is not None


def test_every_error_has_the_one_root():
    """Every Conveyor error but Interrupted (a KeyboardInterrupt) derives from ConveyorError."""
    names = ("ConfigError", "RetryAfter", "AttemptTimeout", "DeadlineExceeded", "SourceError")
    for name in (*names, "CircuitOpen", "QuotaExhausted", "InvalidAnswer"):
        assert issubclass(getattr(conveyor, name), conveyor.ConveyorError)
    assert issubclass(conveyor.Interrupted, KeyboardInterrupt)
    assert issubclass(conveyor.ConfigError, ValueError)


def test_testing_kit_is_public():
    """conveyor.testing exposes the virtual clock and the mock API."""
    assert conveyor.testing.__all__ == ["Faults", "MockAPI", "MockConfig", "VirtualClock"]
