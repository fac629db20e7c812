"""Stream tokens: one job's event stream, for a browser that cannot send the API key.

The tokens themselves on a hand-moved clock; then the routes in-process (ASGI), where each
stream ends at once with its job's final state (the jobs are done before it opens).
"""

import asyncio
import logging
from typing import Any

import pytest

from conveyor.errors import ConfigError
from conveyor.service.stream_tokens import SECRET_ENV, RedactTokens, StreamTokens

from .conftest import api, config, key_for

SECRET = b"s" * 32


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_token_opens_its_job_until_it_expires_and_nothing_else():
    """Valid for its job for ttl_s; another job, another secret, a changed byte: refused."""
    clock = Clock()
    tokens = StreamTokens(SECRET, clock=clock, ttl_s=600)
    token, expires_at = tokens.mint("job-a")
    assert expires_at == 1_700_000_600
    assert tokens.check(token, "job-a") is None
    assert tokens.check(token, "job-b") == "the token is for another job"
    other = StreamTokens(b"t" * 32, clock=clock)
    assert other.check(token, "job-a") == "the token is not valid (not made by this service)"
    forged = token.replace(str(expires_at), str(expires_at + 3600))
    assert tokens.check(forged, "job-a") == "the token is not valid (not made by this service)"
    assert tokens.check("job-a.1.x", "job-a") == "the token is malformed"
    clock.now += 599
    assert tokens.check(token, "job-a") is None
    clock.now += 1
    assert tokens.check(token, "job-a") == "the token has expired"


def test_the_secret_is_shared_through_the_environment_or_drawn():
    """Instances with the same CONVEYOR_STREAM_TOKEN_SECRET accept each other's tokens."""
    shared = {SECRET_ENV: "x" * 40}
    token, _ = StreamTokens.from_environ(shared).mint("j")
    assert StreamTokens.from_environ(shared).check(token, "j") is None
    assert StreamTokens.from_environ({}).check(token, "j") is not None
    with pytest.raises(ConfigError, match="at least 32"):
        StreamTokens.from_environ({SECRET_ENV: "short"})


def test_an_access_log_line_shows_the_token_redacted():
    """uvicorn's access line (its args) keeps the path but not the token's value."""
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/jobs/v1/jobs/j1/events?token=j1.99.abc&x=1", "1.1", 200),
        None,
    )
    assert RedactTokens().filter(record)
    assert "abc" not in record.getMessage()
    assert "/jobs/v1/jobs/j1/events?token=[redacted]&x=1" in record.getMessage()


def _events(text: str) -> list[str]:
    return [line.removeprefix("event: ") for line in text.splitlines() if line.startswith("event")]


def test_with_a_key_a_token_is_made_and_opens_the_stream_without_one(tmp_path):
    """POST stream-token (key) -> 201; GET events?token= (no key) streams to "done"."""

    async def main() -> dict[str, Any]:
        async with api(config(tmp_path, keys=True)) as a:
            key = key_for(tmp_path, "acme")
            job = (
                await a.client.post("/v1/jobs", json={"task": "echo", "items": [1]}, headers=key)
            ).json()
            await a.wait_done(job["id"], key)
            made = await a.client.post(job["links"]["stream_token"], headers=key)
            assert made.status_code == 201
            assert made.headers["cache-control"] == "no-store"
            body = made.json()
            stream = await a.client.get(body["events"])
            no_key = await a.client.post(job["links"]["stream_token"])
            return {
                "job": job,
                "body": body,
                "stream": stream,
                "no_key": no_key,
            }

    got = asyncio.run(main())
    job, body = got["job"], got["body"]
    assert body["events"] == f"/v1/jobs/{job['id']}/events?token={body['token']}"
    assert got["stream"].status_code == 200
    assert _events(got["stream"].text)[-1] == "done"
    assert got["no_key"].status_code == 401  # a token is made for the key's holder only


def test_a_token_opens_neither_another_job_nor_another_tenants_view(tmp_path):
    """A's token on B's job: 401; with B's tenant key too: 404; a bad token: 401 naming why."""

    async def main() -> list[Any]:
        async with api(config(tmp_path, keys=True)) as a:
            acme, other = key_for(tmp_path, "acme"), key_for(tmp_path, "other")
            body = {"task": "echo", "items": [1]}
            one = (await a.client.post("/v1/jobs", json=body, headers=acme)).json()
            two = (await a.client.post("/v1/jobs", json=body, headers=acme)).json()
            token = (await a.client.post(one["links"]["stream_token"], headers=acme)).json()[
                "token"
            ]
            return [
                await a.client.get(f"/v1/jobs/{two['id']}/events?token={token}"),
                await a.client.get(f"/v1/jobs/{one['id']}/events?token={token}", headers=other),
                await a.client.get(f"/v1/jobs/{one['id']}/events?token=nonsense"),
                await a.client.get(f"/v1/jobs/{one['id']}?token={token}", headers=acme),
                token,
            ]

    wrong_job, wrong_tenant, bad, elsewhere, token = asyncio.run(main())
    assert wrong_job.status_code == 401
    assert "for another job" in wrong_job.json()["detail"]
    assert "stream-token" in wrong_job.json()["detail"]
    assert wrong_tenant.status_code == 404
    assert bad.status_code == 401
    assert "malformed" in bad.json()["detail"]
    assert elsewhere.status_code == 422  # only the event stream takes ?token=
    for answer in (wrong_job, wrong_tenant, bad, elsewhere):
        assert token not in answer.text
