"""A connection's limits: Anthropic's input and output budgets and the shape they are kept in.

Read from the TOML config (``conveyor serve`` and ``conveyor worker --config`` alike), checked
when the connection is made, and given to the connection's shared limiter.
"""

from pathlib import Path

import pytest

from conveyor.cli import main
from conveyor.errors import ConfigError
from conveyor.jobs import App
from conveyor.service import Connection, load_config
from conveyor.service.app import add_connections

URL = "https://api.anthropic.com"


def test_a_toml_connection_s_input_and_output_limits_reach_its_limiter(tmp_path: Path):
    """ITPM, OTPM and bucket_s from the file: the shared limiter keeps them, in buckets."""
    path = tmp_path / "c.toml"
    path.write_text(
        f'[connections.claude]\nbase_url = "{URL}"\nrequests_per_minute = 4000\n'
        "input_tokens_per_minute = 2_000_000\noutput_tokens_per_minute = 400_000\n"
        "bucket_s = 2.0\n"
    )
    [connection] = load_config(path).connections
    app = App()
    add_connections(app, (connection,))
    limiter = app.limiter("claude")
    assert limiter is not None
    assert {rate.unit: rate.limit for rate in limiter.config.rates} == {
        "requests": 4000,
        "input_tokens": 2_000_000,
        "output_tokens": 400_000,
    }
    assert (limiter.config.shape, limiter.config.bucket_s) == ("bucket", 2.0)
    assert app.get_task("http:claude") is not None


@pytest.mark.parametrize(
    ("settings", "shape", "seconds"),
    [
        ({"input_tokens_per_minute": 1000}, "bucket", 1.0),  # Anthropic's: 1 s buckets
        ({"output_tokens_per_minute": 1000, "requests_per_minute": 30}, "bucket", 2.0),
        ({"output_tokens_per_minute": 1000, "window_s": 1.0}, "window", None),
        ({"tokens_per_minute": 1000}, "paced", None),  # OpenAI's, shape unknown: as before
    ],
)
def test_input_or_output_limits_are_kept_in_buckets_unless_told_otherwise(settings, shape, seconds):
    """Split limits default to 1 s buckets (or one request's time, if longer), as conveyor run."""
    connection = Connection(name="c", base_url=URL, **settings)
    config = connection.limiter_config()
    assert config is not None
    assert (config.shape, config.bucket_s) == (shape, seconds)


def test_a_connection_without_limits_has_no_limiter():
    """No rate and no concurrency: no limiter to register, none on the app."""
    assert Connection(name="c", base_url=URL).limiter_config() is None
    app = App()
    add_connections(app, (Connection(name="c", base_url=URL),))
    assert app.limiters == []


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"window_s": 1, "bucket_s": 1}, r"connections\.c: window_s=1 and bucket_s=1: .* one of"),
        ({"bucket_s": 0}, r"connections\.c\.bucket_s=0: pass seconds > 0 and at most 60"),
        ({"bucket_s": 120}, r"connections\.c\.bucket_s=120: pass seconds > 0 and at most 60"),
        ({"bucket_s": True}, r"connections\.c\.bucket_s=True"),
        ({"input_tokens_per_minute": -5}, r"input_tokens_per_minute=-5: pass a number > 0"),
        ({"output_tokens_per_minute": "many"}, r"output_tokens_per_minute='many'"),
        (
            {"requests_per_minute": 30, "output_tokens_per_minute": 100, "bucket_s": 1},
            r"connections\.c: .*bucket_s=1.*holds 0\.50 requests.* Give bucket_s >= 2",
        ),
    ],
)
def test_wrong_limits_fail_naming_the_setting_and_the_fix(settings, match):
    """Each wrong limit is a ConfigError naming the connection's setting and what to give."""
    with pytest.raises(ConfigError, match=match):
        Connection(name="c", base_url=URL, **settings)


def test_worker_config_with_wrong_limits_fails_in_one_line(tmp_path: Path, capsys):
    """`conveyor worker --config` reads the same keys: a wrong one exits 2, naming it."""
    path = tmp_path / "c.toml"
    path.write_text(
        f'store = "sqlite:///{tmp_path / "jobs.db"}"\n'
        f'[connections.claude]\nbase_url = "{URL}"\nwindow_s = 1\nbucket_s = 1\n'
    )
    assert main(["worker", "--config", str(path), "--until-idle"]) == 2
    err = capsys.readouterr().err
    assert "connections.claude: window_s=1 and bucket_s=1" in err
    assert err.count("\n") == 1
    assert "Traceback" not in err


def test_worker_config_with_input_and_output_limits_starts(tmp_path: Path, capsys):
    """`conveyor worker --config` with ITPM and OTPM registers the connection's task and runs."""
    path = tmp_path / "c.toml"
    path.write_text(
        f'store = "sqlite:///{tmp_path / "jobs.db"}"\n'
        f'[connections.claude]\nbase_url = "{URL}"\n'
        "input_tokens_per_minute = 30_000\noutput_tokens_per_minute = 8_000\n"
    )
    assert main(["worker", "--config", str(path), "--until-idle"]) == 0
    assert "tasks http:claude;" in capsys.readouterr().out
