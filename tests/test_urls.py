"""`shown_url`: every URL shown, logged or stored has its credentials taken out."""

import asyncio

import pytest

from conveyor import ConfigError
from conveyor._urls import shown_url
from conveyor.http import Endpoint
from conveyor.jobs.http_task import HttpJobTask
from conveyor.llm import open_cache

PASSWORD = "hunter2-password"  # noqa: S105 - a made-up test value


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"postgresql://app:{PASSWORD}@db:5432/jobs", "postgresql://***@db:5432/jobs"),
        (f"redis://:{PASSWORD}@cache:6379/0?ttl=60", "redis://***@cache:6379/0?ttl=60"),
        (f"redis://admin:{PASSWORD}@cache/0", "redis://***@cache/0"),
        ("postgresql://app@db/jobs", "postgresql://***@db/jobs"),
        (f"postgresql://db/jobs?user=app&password={PASSWORD}", "postgresql://db/jobs?user=app&password=***"),
        (f"postgresql://db/jobs?sslpassword={PASSWORD}&schema=c", "postgresql://db/jobs?sslpassword=***&schema=c"),
        (f"redis://:{PASSWORD}@cache:notaport/0", "redis://***@cache:notaport/0"),
        ("redis://:pass/word-with-slash@cache:6379/0", "redis://***@cache:6379/0"),
        ("redis://:pass#word@cache:6379/0", "redis://***@cache:6379/0"),
        ("redis://:pass?word@cache:6379/0", "redis://***@cache:6379/0"),
        ("redis://:p@ss@cache:6379/0", "redis://***@cache:6379/0"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("sqlite:///jobs.db", "sqlite:///jobs.db"),
        ("/var/lib/conveyor/jobs.db", "/var/lib/conveyor/jobs.db"),
    ],
)  # fmt: skip
def test_userinfo_and_secret_query_values_are_hidden(url, shown):
    """User and password, and ?password= and the like, become ***; the rest stays readable."""
    assert shown_url(url) == shown


def test_a_redis_cache_url_that_cannot_be_used_is_named_without_its_password():
    """A bad port in a password-bearing cache URL is a ConfigError that hides the password."""
    with pytest.raises(ConfigError) as caught:
        asyncio.run(open_cache(f"redis://admin:{PASSWORD}@cache:notaport/0").check())
    assert PASSWORD not in str(caught.value)
    assert "admin" not in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        f"redis://admin:{PASSWORD}@cache:notaport/0",
        f"redis://:[{PASSWORD}@cache:6379/0",  # an unencoded "[": "Invalid IPv6 URL"
        f"redis://cache:6379/0?password={PASSWORD}&db=notanumber",
    ],
)
@pytest.mark.parametrize("use", ["limits", "cache"])
def test_a_redis_url_the_client_cannot_read_is_a_config_error_without_its_password(url, use):
    """--limits or a Redis cache whose URL redis-py refuses: ConfigError naming it, no password."""
    from conveyor.limits.redis_limiter import RedisLimits

    def use_it() -> None:
        if use == "limits":
            RedisLimits(url)
        else:
            asyncio.run(open_cache(url).check())

    with pytest.raises(ConfigError) as caught:
        use_it()
    assert PASSWORD not in str(caught.value)
    assert "redis://" in str(caught.value)


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_serve_and_worker_with_a_limits_url_they_cannot_read_say_so_in_one_line(
    tmp_path, capsys, command
):
    """`--limits` with a bad port: one line naming the URL without its password, exit 2."""
    from conveyor.cli import main

    store = ["--store", f"sqlite:///{tmp_path}/jobs.db"]
    limits = ["--limits", f"redis://:{PASSWORD}@127.0.0.1:notaport/0"]
    assert main([command, *store, *limits]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert PASSWORD not in err
    assert err.strip().splitlines()[-1].startswith(f"conveyor {command}: cannot use Redis at")


def test_a_redis_cache_names_itself_without_user_or_password():
    """RedisCache.url, used in its messages, hides the whole userinfo."""
    cache = open_cache(f"redis://admin:{PASSWORD}@127.0.0.1:6379/0?ttl=5")
    assert getattr(cache, "url", None) == "redis://***@127.0.0.1:6379/0?ttl=5"
    asyncio.run(cache.aclose())


@pytest.mark.parametrize(
    "make",
    [
        lambda url: Endpoint(base_url=url),
        lambda url: HttpJobTask(base_url=url, headers={}),
    ],
)
def test_a_base_url_with_credentials_is_refused_without_echoing_them(make):
    """The http tasks' base URL is named in errors and results: credentials go in a header."""
    with pytest.raises(ConfigError, match="header") as caught:
        make(f"https://app:{PASSWORD}@api.example.com")
    assert PASSWORD not in str(caught.value)
    assert "https://***@api.example.com" in str(caught.value)
