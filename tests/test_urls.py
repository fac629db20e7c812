"""`shown_url`: every URL shown, logged or stored has its credentials taken out."""

import pytest

from conveyor import ConfigError
from conveyor._urls import shown_url
from conveyor.http import Endpoint

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


@pytest.mark.parametrize(
    "make",
    [
        lambda url: Endpoint(base_url=url),
    ],
)
def test_a_base_url_with_credentials_is_refused_without_echoing_them(make):
    """The http tasks' base URL is named in errors and results: credentials go in a header."""
    with pytest.raises(ConfigError, match="header") as caught:
        make(f"https://app:{PASSWORD}@api.example.com")
    assert PASSWORD not in str(caught.value)
    assert "https://***@api.example.com" in str(caught.value)
