"""What a web page on another origin can do to a service it reaches by a loopback name.

A browser lets a page send "simple" requests anywhere (GET, and POST with a text/plain,
form or multipart body) without asking, and anything else only after a CORS preflight the
server must grant; it lets the page read an answer only if the answer grants its origin.
"""

import asyncio

import pytest

from .conftest import api, config

EVIL = {"Origin": "http://evil.example"}
# The bodies a page may POST cross-site without a preflight.
SIMPLE_TYPES = [
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
]


def test_no_answer_grants_another_origin_and_no_preflight_is_granted(tmp_path):
    """No answer has CORS headers and a preflight is 405: a page can neither read nor send JSON."""

    async def main() -> None:
        async with api(config(tmp_path), worker=False) as a:
            c = a.client
            job = (await c.post("/v1/jobs", json={"task": "echo", "items": [1]})).json()
            for path in ["/v1/jobs", f"/v1/jobs/{job['id']}", "/v1/service", "/healthz", "/"]:
                r = await c.get(path, headers=EVIL)
                assert r.status_code == 200, path
                assert not [h for h in r.headers if h.startswith("access-control-")], path
            for path in ["/v1/jobs", f"/v1/jobs/{job['id']}/budget", "/v1/batches"]:
                r = await c.options(
                    path,
                    headers={
                        **EVIL,
                        "Access-Control-Request-Method": "POST",
                        "Access-Control-Request-Headers": "content-type,authorization",
                    },
                )
                assert r.status_code == 405, path
                assert not [h for h in r.headers if h.startswith("access-control-")], path

    asyncio.run(main())


@pytest.mark.parametrize("media", SIMPLE_TYPES)
def test_a_job_or_a_budget_cannot_come_as_a_simple_cross_site_request(tmp_path, media):
    """POST /v1/jobs and /budget take only application/json (415): no page can send it blind."""

    async def main() -> None:
        async with api(config(tmp_path), worker=False) as a:
            c = a.client
            job = (await c.post("/v1/jobs", json={"task": "echo", "items": [1]})).json()
            body = b'{"task": "echo", "items": [1]}'
            r = await c.post("/v1/jobs", content=body, headers={**EVIL, "Content-Type": media})
            assert r.status_code == 415, r.text
            budget = b'{"max_cost_usd": 1}'
            r = await c.post(
                f"/v1/jobs/{job['id']}/budget",
                content=budget,
                headers={**EVIL, "Content-Type": media},
            )
            assert r.status_code == 415, r.text
            assert [j["id"] for j in (await c.get("/v1/jobs")).json()["data"]] == [job["id"]]

    asyncio.run(main())
