"""Who may use a Message Batch, and how it reaches its upstream: keys, tenants, connections.

Through the official ``anthropic`` package on the service in-process (`anthropic_kit`); also an
OpenAI batch on ``/v1/messages``, a service mounted under a prefix, and the tenant's job limit.
"""

import asyncio
import json
import logging
from typing import Any

import anthropic
import httpx2
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from conveyor.jobs import App, MemoryStore
from conveyor.mockapi import MockAPI, MockConfig
from conveyor.service import ServiceConfig, create_app
from conveyor.service.config import Connection, Limits
from conveyor.service.keys import add_key

from .anthropic_kit import request, results, service, until_ended
from .conftest import FAST_WORKER


def test_api_keys_come_from_x_api_key_or_bearer_and_nothing_else_passes(tmp_path, caplog):
    """x-api-key (the SDK's) and Bearer both work; none or a wrong one is a 401; keys unlogged."""
    _, secret = add_key(tmp_path / "keys.json", tenant="acme")
    caplog.set_level(logging.DEBUG)

    async def main() -> Any:
        async with service(tmp_path, keys=True, api_key=secret) as s:
            made = await s.client.messages.batches.create(requests=[request("a")])
            bearer = anthropic.AsyncAnthropic(
                auth_token=secret, base_url="http://localhost", http_client=s.http
            )
            seen = await bearer.messages.batches.retrieve(made.id)
            wrong = anthropic.AsyncAnthropic(
                api_key="cvy_0000_wrong", base_url="http://localhost", http_client=s.http
            )
            with pytest.raises(anthropic.AuthenticationError) as refused:
                await wrong.messages.batches.list()
            bare = await s.http.get("/v1/messages/batches")
            jobs = await s.http.get("/v1/jobs", headers={"x-api-key": secret})
            mixed = [
                await s.http.get("/v1/messages/batches", headers=h)
                for h in (
                    {"x-api-key": secret, "Authorization": "Basic eDp5"},
                    {"x-api-key": secret, "Authorization": "Bearer cvy_0000_other"},
                    {"x-api-key": "", "Authorization": f"Bearer {secret}"},
                )
            ]
            both = await s.http.get(
                "/v1/jobs", headers={"x-api-key": secret, "Authorization": f"Bearer {secret}"}
            )
            return made, seen, refused.value, bare, jobs, mixed, both

    made, seen, refused, bare, jobs, mixed, both = asyncio.run(main())
    assert seen.id == made.id
    assert refused.body["error"]["type"] == "authentication_error"
    assert bare.status_code == 401
    assert bare.json()["error"]["type"] == "authentication_error"
    assert "x-api-key" in bare.json()["error"]["message"]
    assert jobs.status_code == 200  # every route takes the key either way
    # A header that is there must be right: a wrong one is never passed over for the other.
    assert [a.status_code for a in mixed] == [401, 401, 401]
    assert {a.json()["error"]["type"] for a in mixed} == {"authentication_error"}
    assert both.status_code == 200
    assert secret not in caplog.text


def test_a_tenant_never_sees_another_tenants_batch(tmp_path):
    """Another tenant's batch is a 404 on every route, and absent from its list."""
    _, acme = add_key(tmp_path / "keys.json", tenant="acme")
    _, other = add_key(tmp_path / "keys.json", tenant="other")

    async def main() -> Any:
        async with service(tmp_path, keys=True, api_key=acme) as s:
            made = await s.client.messages.batches.create(requests=[request("a")])
            await until_ended(s.client, made.id)
            them = anthropic.AsyncAnthropic(
                api_key=other, base_url="http://localhost", http_client=s.http
            )
            batches = them.messages.batches
            refused = 0
            for call in (batches.retrieve, batches.cancel, batches.delete, batches.results):
                with pytest.raises(anthropic.NotFoundError):
                    await call(made.id)
                refused += 1
            foreign = await s.http.get(
                f"/v1/messages/batches/{made.id}/results", headers={"x-api-key": other}
            )
            return refused, await batches.list(), foreign, await s.client.messages.batches.list()

    refused, theirs, foreign, ours = asyncio.run(main())
    assert refused == 4
    assert theirs.data == []
    assert foreign.status_code == 404
    assert len(ours.data) == 1


def test_with_several_connections_a_header_chooses_one(tmp_path):
    """No header: a 400 naming the choices and the header; x-conveyor-connection picks one."""

    async def main() -> Any:
        async with service(tmp_path, connections=("one", "two")) as s:
            with pytest.raises(anthropic.BadRequestError) as unnamed:
                await s.client.messages.batches.create(requests=[request("a")])
            with pytest.raises(anthropic.BadRequestError) as unknown:
                await s.client.messages.batches.create(
                    requests=[request("a")], extra_headers={"x-conveyor-connection": "three"}
                )
            made = await s.client.messages.batches.create(
                requests=[request("a")], extra_headers={"x-conveyor-connection": "two"}
            )
            done = await until_ended(s.client, made.id)
            [job] = (await s.http.get("/v1/jobs")).json()["data"]
            return unnamed.value, unknown.value, done, job

    unnamed, unknown, done, job = asyncio.run(main())
    message = unnamed.body["error"]["message"]
    assert "one, two" in message
    assert "x-conveyor-connection" in message
    assert "no connection 'three'" in unknown.body["error"]["message"]
    assert done.request_counts.succeeded == 1
    assert job["task"] == "http:two"


def test_each_request_carries_the_create_calls_anthropic_headers(tmp_path):
    """anthropic-version (the SDK's, else 2023-06-01) and anthropic-beta go with each request."""

    async def main() -> Any:
        async with service(tmp_path) as s:
            version = s.client.default_headers["anthropic-version"]
            made = await s.client.messages.batches.create(
                requests=[request("a")], extra_headers={"anthropic-beta": "some-beta-1"}
            )
            await until_ended(s.client, made.id)
            raw = await s.http.post("/v1/messages/batches", json={"requests": [request("b")]})
            await until_ended(s.client, raw.json()["id"])
            inputs = []
            for job in (await s.http.get("/v1/jobs")).json()["data"]:
                url = f"/v1/jobs/{job['id']}/results?format=json"
                [item] = (await s.http.get(url)).json()["data"]
                inputs.append(item["input"])
            return version, inputs

    version, (plain, sdk) = asyncio.run(main())  # newest first
    assert sdk["headers"] == {"anthropic-version": version, "anthropic-beta": "some-beta-1"}
    assert plain["headers"] == {"anthropic-version": "2023-06-01"}
    assert sdk["url"] == plain["url"] == "/v1/messages"


def test_an_openai_batch_may_target_v1_messages(tmp_path):
    """OpenAI's Batch API takes endpoint /v1/messages: each line's body a Messages request."""
    lines = [
        {
            "custom_id": f"r{i}",
            "method": "POST",
            "url": "/v1/messages",
            "body": request("x")["params"],
        }
        for i in range(3)
    ]
    data = "".join(json.dumps(line) + "\n" for line in lines).encode()

    async def main() -> Any:
        async with service(tmp_path) as s:
            upload = await s.http.post(
                "/v1/files", files={"file": ("in.jsonl", data)}, data={"purpose": "batch"}
            )
            made = await s.http.post(
                "/v1/batches",
                json={
                    "input_file_id": upload.json()["id"],
                    "endpoint": "/v1/messages",
                    "completion_window": "24h",
                },
            )
            url = f"/v1/batches/{made.json()['id']}"
            async with asyncio.timeout(10):
                while (batch := (await s.http.get(url)).json())["status"] != "completed":  # noqa: ASYNC110 - polls
                    await asyncio.sleep(0.02)
            output = await s.http.get(f"/v1/files/{batch['output_file_id']}/content")
            return batch, output.text

    batch, output = asyncio.run(main())
    assert batch["request_counts"] == {"total": 3, "completed": 3, "failed": 0}
    answers = [json.loads(x) for x in output.splitlines()]
    assert sorted(a["custom_id"] for a in answers) == ["r0", "r1", "r2"]
    for answer in answers:
        assert answer["response"]["body"]["type"] == "message"
        assert answer["response"]["body"]["usage"]["output_tokens"] > 0


def test_mounted_under_a_prefix_the_results_url_and_errors_follow_the_mount(tmp_path):
    """Mounted in another app at /conveyor: results_url has the prefix; errors keep their shape."""

    async def main() -> Any:
        async with MockAPI(MockConfig(latency_ms=1.0)) as upstream:
            cfg = ServiceConfig(
                store="memory:",
                keys_file=None,
                files_dir=tmp_path / "files",
                connections=(Connection(name="mock", base_url=upstream.base_url),),
            )
            inner = create_app(cfg, app=App(), store=MemoryStore(), worker_options=FAST_WORKER)
            outer = Starlette(routes=[Mount("/conveyor", app=inner)])
            async with inner.router.lifespan_context(inner):
                http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=outer))
                client = anthropic.AsyncAnthropic(
                    api_key="unused", base_url="http://localhost/conveyor", http_client=http
                )
                made = await client.messages.batches.create(requests=[request("a")])
                done = await until_ended(client, made.id)
                lines = await results(client, made.id)
                with pytest.raises(anthropic.BadRequestError) as bad:
                    await client.messages.batches.list(limit=0)
                await client.close()
                return done, lines, bad.value

    done, lines, bad = asyncio.run(main())
    assert done.results_url == f"http://localhost/conveyor/v1/messages/batches/{done.id}/results"
    assert [r.result.type for r in lines] == ["succeeded"]
    assert bad.body["error"]["type"] == "invalid_request_error"


def test_a_batch_counts_against_the_tenants_active_jobs_limit(tmp_path):
    """Past max_active_jobs_per_tenant a create is a 429 rate_limit_error, and nothing is made."""

    async def main() -> Any:
        limits = Limits(max_active_jobs_per_tenant=1)
        async with service(tmp_path, latency_ms=50.0, limits=limits) as s:
            client = s.client.with_options(max_retries=0)
            first = await client.messages.batches.create(
                requests=[request(f"r{i}") for i in range(200)]
            )
            with pytest.raises(anthropic.RateLimitError) as refused:
                await client.messages.batches.create(requests=[request("a")])
            listed = await client.messages.batches.list()
            await client.messages.batches.cancel(first.id)
            return first, refused.value, listed

    first, refused, listed = asyncio.run(main())
    assert refused.body["error"]["type"] == "rate_limit_error"
    assert "max_active_jobs_per_tenant=1" in refused.body["error"]["message"]
    assert [b.id for b in listed.data] == [first.id]
