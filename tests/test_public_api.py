"""The public surface: small, explicit, and importable as documented."""

import pytest

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


HTTP_EXPECTED = {
    "Batch",
    "BatchError",
    "BatchFiles",
    "BatchLimits",
    "BatchResult",
    "BatchTally",
    "Endpoint",
    "HTTPStatusError",
    "InputError",
    "InvalidLine",
    "OutputError",
    "Plan",
    "RawAnswer",
    "Request",
    "Response",
    "Transport",
    "TransportError",
    "estimate_tokens",
    "parse_line",
    "prepare",
    "result_line",
}


def test_http_exports_what_users_call():
    """conveyor.http's __all__ is the batch runner's user surface, each name importable."""
    import conveyor.http

    assert set(conveyor.http.__all__) == HTTP_EXPECTED
    for name in HTTP_EXPECTED:
        assert getattr(conveyor.http, name) is not None


@pytest.mark.parametrize(
    ("name", "module"),
    [
        ("HttpTask", "client"),
        ("AiohttpTransport", "client"),
        ("Progress", "tally"),
        ("RateMeter", "tally"),
        ("snapshot", "tally"),
        ("check_writable", "output"),
        ("write_text_atomic", "output"),
    ],
)
def test_http_internal_names_still_import_with_a_warning(name: str, module: str):
    """A name conveyor.http once exported still imports, warning where it lives now."""
    import importlib

    import conveyor.http

    with pytest.warns(DeprecationWarning, match=rf"import it from conveyor\.http\.{module}"):
        value = getattr(conveyor.http, name)
    assert value is getattr(importlib.import_module(f"conveyor.http.{module}"), name)


def test_http_unknown_name_is_an_attribute_error():
    """An attribute conveyor.http never had raises AttributeError, not a warning."""
    import conveyor.http

    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        conveyor.http.Nope  # noqa: B018
