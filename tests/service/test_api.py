"""The REST API in-process (ASGI).

Jobs, idempotency, paging, results, cancel, retry, files,

problem+json errors, tenants and limits. The worker is real; the store is in memory.
"""

import asyncio
import json

from conveyor.service import routes_stream

from .conftest import api, config, key_for


def test_a_job_is_accepted_at_once_and_runs_to_completion(tmp_path):
    """POST /v1/jobs answers 202 with the queued job and its links; the worker completes it."""

    async def main() -> None:
        async with api(config(tmp_path)) as a:
            r = await a.client.post("/v1/jobs", json={"task": "echo", "items": [1, 2, 3]})
            assert r.status_code == 202
            job = r.json()
            assert job["status"] == "queued"
            assert r.headers["location"] == f"/v1/jobs/{job['id']}"
            assert job["links"]["events"] == f"/v1/jobs/{job['id']}/events"
            done = await a.wait_done(job["id"])
            assert done["status"] == "completed"
            assert done["progress"] == 100
            assert done["counts"]["succeeded"] == 3
            assert done["summary"]["total"] == 3
            assert done["summary"]["latency_p95_s"] > 0

    asyncio.run(main())


def test_the_same_idempotency_key_returns_the_same_job(tmp_path):
    """A second POST with the same Idempotency-Key returns the first job, marked as replayed."""

    async def main() -> None:
        async with api(config(tmp_path), worker=False) as a:
            body = {"task": "echo", "items": [1]}
            first = await a.client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "k-1"})
            again = await a.client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "k-1"})
            other = await a.client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "k-2"})
            assert first.json()["id"] == again.json()["id"] != other.json()["id"]
            assert again.status_code == 202
            assert again.headers["idempotent-replayed"] == "true"
            assert "idempotent-replayed" not in first.headers

    asyncio.run(main())


def test_jobs_list_newest_first_with_cursor_paging_and_filters(tmp_path):
    """GET /v1/jobs pages with next_cursor until null, and filters by status and task."""

    async def main() -> None:
        async with api(config(tmp_path), worker=False) as a:
            ids = []
            for task in ("echo", "slow", "echo", "echo", "slow"):
                r = await a.client.post("/v1/jobs", json={"task": task, "items": [1]})
                ids.append(r.json()["id"])
            await a.client.post(f"/v1/jobs/{ids[0]}/cancel")
            seen: list[str] = []
            cursor = None
            while True:
                params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
                page = (await a.client.get("/v1/jobs", params=params)).json()
                seen += [j["id"] for j in page["data"]]
                cursor = page["next_cursor"]
                if cursor is None:
                    break
            assert seen == ids[::-1]
            slow = (await a.client.get("/v1/jobs", params={"task": "slow"})).json()["data"]
            assert [j["id"] for j in slow] == [ids[4], ids[1]]
            gone = (await a.client.get("/v1/jobs", params={"status": "cancelled"})).json()
            assert [j["id"] for j in gone["data"]] == [ids[0]]

    asyncio.run(main())


def test_results_stream_as_jsonl_or_page_as_json_by_state(tmp_path):
    """Results come as JSONL (all, or one state) and as JSON pages with a cursor."""

    async def main() -> None:
        async with api(config(tmp_path)) as a:
            items = [{"n": i, "fail": i % 3 == 0} for i in range(10)]
            job = (await a.client.post("/v1/jobs", json={"task": "echo", "items": items})).json()
            await a.wait_done(job["id"])
            r = await a.client.get(f"/v1/jobs/{job['id']}/results")
            assert r.headers["content-type"].startswith("application/jsonl")
            lines = [json.loads(line) for line in r.text.splitlines()]
            assert [x["index"] for x in lines] == list(range(10))
            r = await a.client.get(f"/v1/jobs/{job['id']}/results", params={"state": "failed"})
            failed = [json.loads(line) for line in r.text.splitlines()]
            assert [x["index"] for x in failed] == [0, 3, 6, 9]
            assert failed[0]["error"]["type"] == "ValueError"
            url = f"/v1/jobs/{job['id']}/results"
            params: dict[str, str | int] = {"format": "json", "limit": 3, "state": "succeeded"}
            page = (await a.client.get(url, params=params)).json()
            assert [x["index"] for x in page["data"]] == [1, 2, 4]
            page = (await a.client.get(url, params=params | {"cursor": page["next_cursor"]})).json()
            assert [x["index"] for x in page["data"]] == [5, 7, 8]

    asyncio.run(main())


def test_the_results_stream_takes_a_limit_and_refuses_a_bad_one(tmp_path, monkeypatch):
    """JSONL: ?limit= gives the first N items after the cursor, across pages; a bad one is 422."""
    monkeypatch.setattr(routes_stream, "PAGE", 4)  # so that a stream crosses pages

    async def main() -> None:
        async with api(config(tmp_path)) as a:
            items = [{"n": i, "fail": i % 3 == 0} for i in range(10)]
            job = (await a.client.post("/v1/jobs", json={"task": "echo", "items": items})).json()
            await a.wait_done(job["id"])
            url = f"/v1/jobs/{job['id']}/results"

            async def indexes(**params: str | int) -> list[int]:
                r = await a.client.get(url, params=params)
                assert r.status_code == 200, r.text
                return [json.loads(line)["index"] for line in r.text.splitlines()]

            assert await indexes() == list(range(10))
            assert await indexes(limit=2) == [0, 1]
            assert await indexes(limit=6) == [0, 1, 2, 3, 4, 5]
            assert await indexes(limit=5, cursor=3) == [4, 5, 6, 7, 8]
            assert await indexes(limit=50, cursor=7) == [8, 9]
            assert await indexes(limit=5, state="succeeded") == [1, 2, 4, 5, 7]
            for bad in ("abc", "-1", "0", "99999999999999999999", "2.5"):
                r = await a.client.get(url, params={"limit": bad})
                assert r.status_code == 422, (bad, r.status_code, r.text)
                assert f"?limit={bad!r}: pass a whole number from 1 to" in r.json()["detail"]

    asyncio.run(main())


def test_retry_reruns_only_the_failed_items(tmp_path):
    """POST retry puts the failed items back; the flaky task then succeeds on them."""

    async def main() -> None:
        async with api(config(tmp_path)) as a:
            items = [{"n": i, "fail": i < 2} for i in range(5)]
            job = (await a.client.post("/v1/jobs", json={"task": "flaky", "items": items})).json()
            done = await a.wait_done(job["id"])
            assert done["counts"]["failed"] == 2
            r = await a.client.post(f"/v1/jobs/{job['id']}/retry")
            assert r.status_code == 202
            assert r.json()["retried"] == 2
            done = await a.wait_done(job["id"])
            assert (done["counts"]["succeeded"], done["counts"]["failed"]) == (5, 0)

    asyncio.run(main())


def test_cancel_stops_a_queued_job_and_retry_of_it_is_a_conflict(tmp_path):
    """Cancel answers 202 with the job cancelled; retrying a cancelled job is 409 problem+json."""

    async def main() -> None:
        async with api(config(tmp_path), worker=False) as a:
            job = (await a.client.post("/v1/jobs", json={"task": "echo", "items": [1]})).json()
            r = await a.client.post(f"/v1/jobs/{job['id']}/cancel")
            assert (r.status_code, r.json()["status"]) == (202, "cancelled")
            r = await a.client.post(f"/v1/jobs/{job['id']}/retry")
            assert r.status_code == 409
            assert r.headers["content-type"] == "application/problem+json"
            assert "cancelled" in r.json()["detail"]

    asyncio.run(main())


def test_budget_sets_the_jobs_max_cost_and_refuses_bad_bodies_as_problems(tmp_path):
    """POST budget: 202 with the new max_cost_usd; a bad body 422, a cancelled job 409."""

    async def main() -> None:
        async with api(config(tmp_path), worker=False) as a:
            job = (await a.client.post("/v1/jobs", json={"task": "echo", "items": [1]})).json()
            url = f"/v1/jobs/{job['id']}/budget"
            r = await a.client.post(url, json={"max_cost_usd": 12.5})
            assert r.status_code == 202
            assert r.json()["options"]["max_cost_usd"] == 12.5
            stored = await a.asgi.state.service.jobs.get(job["id"])
            assert stored.options.max_cost_usd == 12.5
            bad: tuple[dict[str, object], ...] = (
                {"max_cost_usd": 0},
                {"max_cost_usd": "5"},
                {},
                {"max_cost_usd": 1, "x": 1},
            )
            for body in bad:
                r = await a.client.post(url, json=body)
                assert r.status_code == 422, body
                assert r.headers["content-type"] == "application/problem+json"
                assert "budget" in r.json()["detail"]
            r = await a.client.post(url, content=b"12", headers={"content-type": "text/plain"})
            assert r.status_code == 415
            await a.client.post(f"/v1/jobs/{job['id']}/cancel")
            r = await a.client.post(url, json={"max_cost_usd": 20})
            assert r.status_code == 409
            assert "cancelled" in r.json()["detail"]

    asyncio.run(main())


def test_a_jsonl_file_upload_becomes_a_job(tmp_path):
    """POST /v1/files streams a JSONL file to disk; a job made from its id has its items."""

    async def main() -> None:
        async with api(config(tmp_path)) as a:
            body = b'{"n": 1}\n\n{"n": 2}\n"three"'
            r = await a.client.post(
                "/v1/files", content=body, headers={"Content-Type": "application/jsonl"}
            )
            assert r.status_code == 201
            info = r.json()
            assert (info["items"], info["bytes"]) == (3, len(body))
            r = await a.client.post("/v1/jobs", json={"task": "echo", "file_id": info["id"]})
            done = await a.wait_done(r.json()["id"])
            assert done["counts"]["succeeded"] == 3
            bad = await a.client.post("/v1/files", content=b'{"n": 1}\nnot json\n')
            assert bad.status_code == 422
            assert "line 2 is not valid JSON" in bad.json()["detail"]
            # An item over the jobs' max_item_bytes is refused at upload, naming its line; a
            # line long only for its blanks is measured as a job stores it (compact).
            big = b'{"n": 1}\n{"s": "' + b"x" * 1_100_000 + b'"}\n'
            bad = await a.client.post("/v1/files", content=big)
            assert bad.status_code == 422
            assert (
                "line 2 is 1,100,008 bytes of JSON, over max_item_bytes=1,048,576"
                in (bad.json()["detail"])
            )
            padded = b'{"n": 1}\n{"n":    ' + b" " * 1_100_000 + b"2}\n"
            r = await a.client.post("/v1/files", content=padded)
            assert r.status_code == 201, r.text
            r = await a.client.post("/v1/jobs", json={"task": "echo", "file_id": r.json()["id"]})
            assert r.status_code == 202, r.text
            assert (await a.wait_done(r.json()["id"]))["counts"]["succeeded"] == 2

    asyncio.run(main())


def test_errors_are_problem_json_that_say_what_to_fix(tmp_path):
    """Unknown task, bad options, both items and file, wrong type, unknown job: clear problems."""

    async def main() -> None:
        async with api(config(tmp_path), worker=False) as a:
            c = a.client
            r = await c.post("/v1/jobs", json={"task": "nope", "items": [1]})
            assert r.status_code == 422
            assert "unknown task 'nope'" in r.json()["detail"]
            assert "echo" in r.json()["detail"]
            r = await c.post(
                "/v1/jobs", json={"task": "echo", "items": [1], "options": {"attempts": 0}}
            )
            assert r.status_code == 422
            assert r.json()["errors"][0]["field"] == "options.attempts"
            r = await c.post("/v1/jobs", json={"task": "echo"})
            assert "exactly one" in r.json()["detail"]
            r = await c.post(
                "/v1/jobs", content=b"task=echo", headers={"Content-Type": "text/plain"}
            )
            assert r.status_code == 415
            r = await c.get("/v1/jobs/01234567-0000-7000-8000-000000000000")
            assert (r.status_code, r.headers["content-type"]) == (404, "application/problem+json")
            assert r.json()["title"] == "Not Found"
            r = await c.get("/v1/jobs", params={"status": "done"})
            assert "pass one of queued" in r.json()["detail"]

    asyncio.run(main())


def test_limits_answer_413_and_429_with_the_limit_named(tmp_path):
    """Over body size or items per job: 413; over active jobs per tenant: 429; replays pass."""

    async def main() -> None:
        cfg = config(
            tmp_path, max_body_bytes=2000, max_items_per_job=5, max_active_jobs_per_tenant=2
        )
        async with api(cfg, worker=False) as a:
            c = a.client
            r = await c.post("/v1/jobs", json={"task": "echo", "items": ["x" * 3000]})
            assert r.status_code == 413
            assert "max_body_bytes=2,000" in r.json()["detail"]
            r = await c.post("/v1/jobs", json={"task": "echo", "items": list(range(6))})
            assert r.status_code == 413
            assert "max_items_per_job=5" in r.json()["detail"]
            first = await c.post(
                "/v1/jobs", json={"task": "echo", "items": [1]}, headers={"Idempotency-Key": "a"}
            )
            await c.post("/v1/jobs", json={"task": "echo", "items": [1]})
            r = await c.post("/v1/jobs", json={"task": "echo", "items": [1]})
            assert r.status_code == 429
            assert "max_active_jobs_per_tenant=2" in r.json()["detail"]
            # A replay of an existing job is not a new job: it is answered, not refused.
            again = await c.post(
                "/v1/jobs", json={"task": "echo", "items": [1]}, headers={"Idempotency-Key": "a"}
            )
            assert (again.status_code, again.json()["id"]) == (202, first.json()["id"])
            await c.post(f"/v1/jobs/{first.json()['id']}/cancel")
            r = await c.post("/v1/jobs", json={"task": "echo", "items": [1]})
            assert r.status_code == 202

    asyncio.run(main())


def test_every_job_endpoint_is_scoped_to_the_callers_tenant(tmp_path):
    """With keys, a call needs one (401), and another tenant's job answers 404 everywhere."""

    async def main() -> None:
        async with api(config(tmp_path, keys=True), worker=False) as a:
            acme = key_for(tmp_path, "acme")
            globex = key_for(tmp_path, "globex")
            c = a.client
            r = await c.post("/v1/jobs", json={"task": "echo", "items": [1]})
            assert r.status_code == 401
            assert r.headers["www-authenticate"].startswith("Bearer")
            r = await c.get("/v1/jobs", headers={"Authorization": "Bearer cvy_nope_nope"})
            assert r.status_code == 401
            assert "not valid" in r.json()["detail"]
            job = (
                await c.post("/v1/jobs", json={"task": "echo", "items": [1]}, headers=acme)
            ).json()
            jid = job["id"]
            assert (await c.get(f"/v1/jobs/{jid}", headers=acme)).status_code == 200
            for method, path in [
                ("GET", f"/v1/jobs/{jid}"),
                ("GET", f"/v1/jobs/{jid}/events"),
                ("GET", f"/v1/jobs/{jid}/results"),
                ("POST", f"/v1/jobs/{jid}/cancel"),
                ("POST", f"/v1/jobs/{jid}/retry"),
                ("POST", f"/v1/jobs/{jid}/budget"),
            ]:
                r = await c.request(method, path, headers=globex)
                assert r.status_code == 404, (method, path)
            assert (await c.get("/v1/jobs", headers=globex)).json()["data"] == []
            listed = (await c.get("/v1/jobs", headers=acme)).json()["data"]
            assert [j["id"] for j in listed] == [jid]
            # Idempotency keys are per tenant too.
            h = {"Idempotency-Key": "same"}
            one = await c.post("/v1/jobs", json={"task": "echo", "items": [1]}, headers=acme | h)
            two = await c.post("/v1/jobs", json={"task": "echo", "items": [1]}, headers=globex | h)
            assert one.json()["id"] != two.json()["id"]

    asyncio.run(main())


def test_the_dashboard_and_the_openapi_document_are_served(tmp_path):
    """/ is the dashboard's HTML, its script and style are package files, /openapi.json is 3.1."""

    async def main() -> None:
        async with api(config(tmp_path), worker=False) as a:
            r = await a.client.get("/")
            assert r.status_code == 200
            assert "Conveyor" in r.text
            assert (await a.client.get("/static/app.js")).status_code == 200
            assert (await a.client.get("/static/style.css")).status_code == 200
            doc = (await a.client.get("/openapi.json")).json()
            assert doc["openapi"] == "3.1.0"
            assert "/v1/jobs/{job_id}/events" in doc["paths"]

    asyncio.run(main())
