"""An API's per-minute limits, as a run (`BatchLimits`) and a connection (`Connection`) take them.

Both check them with one set of rules and build the same limiter from them; each names a wrong
setting its own way.
"""

from typing import Any

import pytest

from conveyor import ConfigError
from conveyor.http import BatchLimits
from conveyor.service import Connection

URL = "https://api.example.com"


@pytest.mark.parametrize(
    ("settings", "run_says", "connection_says"),
    [
        (
            {"tokens_per_minute": 0},
            r"BatchLimits\(tokens_per_minute=0\): pass a number > 0, or None",
            r"connections\.c\.tokens_per_minute=0: pass a number > 0, or leave it out",
        ),
        (
            {"window_s": 61},
            r"BatchLimits\(window_s=61\): pass seconds > 0 and at most 60",
            r"connections\.c\.window_s=61: pass seconds > 0 and at most 60",
        ),
        (
            {"window_s": 1, "bucket_s": 1},
            r"BatchLimits: window_s=1 and bucket_s=1: .* not both",
            r"connections\.c: window_s=1 and bucket_s=1: .* not both",
        ),
    ],
)
def test_a_run_and_a_connection_refuse_the_same_limits(settings, run_says, connection_says):
    """One rule for each limit, in both; the error names the setting as each owner calls it."""
    with pytest.raises(ConfigError, match=run_says):
        BatchLimits(**settings)
    with pytest.raises(ConfigError, match=connection_says):
        Connection(name="c", base_url=URL, **settings)


def test_a_run_and_a_connection_build_the_same_limiter_from_the_same_limits():
    """Rates in the same order, and the shape: what the limiter keeps does not depend on who."""
    settings: dict[str, Any] = {
        "requests_per_minute": 60.0,
        "tokens_per_minute": 6000.0,
        "window_s": 1.0,
    }
    run = BatchLimits(**settings).limiter_config_for("api")
    connection = Connection(name="api", base_url=URL, **settings).limiter_config()
    assert connection is not None
    assert (run.rates, run.shape, run.window_s) == (
        connection.rates,
        connection.shape,
        connection.window_s,
    )
    assert [rate.unit for rate in run.rates] == ["requests", "tokens"]
