"""MockConfig and Faults: validated at construction, with messages that say the fix."""

import argparse
import dataclasses
import subprocess
import sys

import pytest

from conveyor.errors import ConfigError
from conveyor.mockapi import AnthropicLimits, Faults, MockConfig, add_arguments, config_from_args


def test_defaults_are_a_plain_fast_api():
    """The defaults: 50 ms fixed latency, no limits, no faults, a 60 s window."""
    config = MockConfig()
    assert (config.latency_ms, config.latency, config.rpm, config.tpm) == (
        50.0,
        "fixed",
        None,
        None,
    )
    assert config.window_s == 60.0
    assert not config.faults.any
    assert (config.request_share, config.token_share) == (None, None)


def test_shares_scale_with_the_window():
    """A window admits rpm * window_s / 60 requests and tpm * window_s / 60 tokens."""
    config = MockConfig(rpm=600, tpm=90_000, window_s=0.1)
    assert (config.request_share, config.token_share) == (1, 150)
    assert MockConfig(rpm=700, window_s=6.0).request_share == 70


def test_config_is_frozen():
    """A config cannot change after construction."""
    with pytest.raises(dataclasses.FrozenInstanceError):
        MockConfig().rpm = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"latency_ms": -1}, r"latency_ms=-1\): latency_ms must be >= 0"),
        ({"latency_ms": float("nan")}, "latency_ms must be a finite number"),
        ({"latency": "gaussian"}, "latency must be 'fixed' or 'lognormal'"),
        ({"latency_sigma": -0.1}, "latency_sigma must be >= 0"),
        ({"window_s": 0}, "window_s must be a number of seconds > 0"),
        ({"rpm": 0}, "rpm must be > 0, or None for no limit"),
        ({"tpm": True}, "tpm must be a finite number"),
        ({"rpm": 10, "window_s": 1}, "raise rpm or window_s so that rpm"),
        ({"faults": 0.5}, r"pass faults=Faults\(fail_rate=\.\.\., \.\.\.\)"),
        ({"seed": 1.5}, "seed must be an int"),
    ],
)
def test_bad_config_names_the_argument_and_the_fix(kwargs, match):
    """Each wrong MockConfig value raises ConfigError naming the argument and what to do."""
    with pytest.raises(ConfigError, match=match):
        MockConfig(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"fail_rate": 1.5}, "fail_rate is a fraction of requests, from 0.0 to 1.0"),
        ({"drop_rate": -0.1}, "drop_rate is a fraction"),
        ({"hang_rate": "0.1"}, "hang_rate must be a finite number"),
        ({"fail_rate": 0.6, "drop_rate": 0.6}, "add up to 1.2; lower them"),
        ({"hang_s": 0}, "hang_s must be a number of seconds > 0"),
    ],
)
def test_bad_faults_name_the_argument_and_the_fix(kwargs, match):
    """Each wrong Faults value raises ConfigError naming the argument and what to do."""
    with pytest.raises(ConfigError, match=match):
        Faults(**kwargs)


def test_anthropic_limits_default_to_none_and_take_tier_like_figures():
    """No Messages limits by default; rpm, itpm, otpm, burst, 529s and a cap when asked."""
    assert MockConfig().anthropic == AnthropicLimits()
    assert not AnthropicLimits().limited
    limits = AnthropicLimits(
        rpm=50, itpm=30_000, otpm=8_000, burst_s=1.0, overloaded_rate=0.03, spend_cap_tokens=10**6
    )
    assert limits.limited
    assert AnthropicLimits(spend_cap_tokens=5).limited
    assert MockConfig(anthropic=limits).anthropic.itpm == 30_000


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rpm": 0}, r"AnthropicLimits\(rpm=0\): rpm is a per-minute limit > 0, or None"),
        ({"itpm": -5}, "itpm is a per-minute limit > 0"),
        ({"otpm": float("inf")}, "otpm must be a finite number"),
        ({"burst_s": 0}, r"burst_s must be a number of seconds > 0 \(1.0 enforces 60 RPM"),
        ({"overloaded_rate": 1.5}, "overloaded_rate is a fraction of requests, from 0.0 to 1.0"),
        ({"spend_cap_tokens": 0}, "spend_cap_tokens must be a whole number of tokens >= 1"),
        ({"spend_cap_tokens": 2.5}, "or None for no cap"),
        ({"spend_cap_tokens": True}, "spend_cap_tokens must be a whole number"),
    ],
)
def test_bad_anthropic_limits_name_the_argument_and_the_fix(kwargs, match):
    """Each wrong AnthropicLimits value raises ConfigError naming the argument and the fix."""
    with pytest.raises(ConfigError, match=match):
        AnthropicLimits(**kwargs)


def test_anthropic_limits_must_be_the_settings_object():
    """MockConfig(anthropic=...) takes an AnthropicLimits and says so otherwise."""
    with pytest.raises(ConfigError, match=r"pass anthropic=AnthropicLimits\(rpm=\.\.\."):
        MockConfig(anthropic={"rpm": 50})  # type: ignore[arg-type]


def test_config_errors_are_value_errors():
    """Code guarding with `except ValueError` catches a bad mock config too."""
    with pytest.raises(ValueError, match="latency_ms"):
        MockConfig(latency_ms=-5)


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_cli_options_build_the_config():
    """The command-line options map one to one onto MockConfig and Faults."""
    args = parse(
        "--latency", "5ms", "--latency-shape", "lognormal", "--latency-sigma", "0.3",
        "--rpm", "600", "--tpm", "1000", "--window", "10s",
        "--fail", "0.05", "--hang", "0.01", "--drop", "0.02", "--hang-for", "30s", "--seed", "7",
    )  # fmt: skip
    assert config_from_args(args) == MockConfig(
        latency_ms=5.0,
        latency="lognormal",
        latency_sigma=0.3,
        rpm=600.0,
        tpm=1000.0,
        window_s=10.0,
        faults=Faults(fail_rate=0.05, hang_rate=0.01, drop_rate=0.02, hang_s=30.0),
        seed=7,
    )
    assert (args.host, args.port, args.allow_remote) == ("127.0.0.1", 8765, False)


def test_the_old_spellings_still_work_and_say_what_to_write(capsys):
    """The old spellings (--latency-ms, --window-s, ...) give the same config, a note each."""
    old = parse(
        "--latency-ms", "5", "--latency", "lognormal", "--window-s", "10", "--hang-s", "30",
        "--burst-s", "2",
    )  # fmt: skip
    new = parse(
        "--latency", "5ms", "--latency-shape", "lognormal", "--window", "10s", "--hang-for",
        "30s", "--burst", "2s",
    )  # fmt: skip
    assert config_from_args(old) == config_from_args(new)
    err = capsys.readouterr().err
    for note in (
        "--latency-ms is deprecated; write --latency 5ms",
        (
            "--latency lognormal is deprecated (--latency takes the time now); write"
            " --latency-shape lognormal"
        ),
        "--window-s is deprecated; write --window 10s",
        "--hang-s is deprecated; write --hang-for 30s",
        "--burst-s is deprecated; write --burst 2s",
    ):
        assert note in err


def test_cli_options_build_the_anthropic_limits():
    """The Messages route's options map onto AnthropicLimits."""
    args = parse(
        "--anthropic-rpm", "50", "--itpm", "30000", "--otpm", "8000", "--burst", "2s",
        "--overloaded-rate", "0.03", "--spend-cap-tokens", "1000000",
    )  # fmt: skip
    assert config_from_args(args).anthropic == AnthropicLimits(
        rpm=50.0,
        itpm=30_000.0,
        otpm=8_000.0,
        burst_s=2.0,
        overloaded_rate=0.03,
        spend_cap_tokens=1_000_000,
    )
    with pytest.raises(ConfigError, match="overloaded_rate"):
        config_from_args(parse("--overloaded-rate", "2"))


def test_cli_help_explains_the_anthropic_options():
    """--help lists each Messages option with what it does."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    text = " ".join(parser.format_help().split())
    for option in ("--anthropic-rpm", "--itpm", "--otpm", "--burst", "--overloaded-rate"):
        assert option in text
    assert "--spend-cap-tokens" in text
    assert "1s enforces 60 RPM as 1 request a second" in text
    assert "answered 529 overloaded_error" in text


def test_cli_defaults_match_the_config_defaults():
    """With no options the command serves the default config."""
    assert config_from_args(parse()) == MockConfig()


def test_a_bad_cli_value_is_a_config_error():
    """A wrong option value surfaces as the same ConfigError the constructor raises."""
    with pytest.raises(ConfigError, match="fail_rate"):
        config_from_args(parse("--fail", "2"))


def test_building_the_cli_does_not_import_aiohttp():
    """The options and the config load without aiohttp, so `conveyor --help` stays fast."""
    script = (
        "import argparse, sys\n"
        "from conveyor.mockapi import add_arguments, config_from_args\n"
        "parser = argparse.ArgumentParser()\n"
        "add_arguments(parser)\n"
        "config_from_args(parser.parse_args([]))\n"
        "print('aiohttp' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_server_parts_load_on_first_use():
    """MockAPI, run_in_process and serve resolve lazily; unknown names still raise."""
    from conveyor import mockapi
    from conveyor.mockapi.server import MockAPI

    assert mockapi.MockAPI is MockAPI
    assert callable(mockapi.run_in_process)
    assert callable(mockapi.serve)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = mockapi.Nope
