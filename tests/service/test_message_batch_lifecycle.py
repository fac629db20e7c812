"""The Message Batches lifecycle in parts: the pure checks, paging, counts, results, errors.

No network: the pure functions with plain values and Hypothesis; expiry on the virtual clock
(`conveyor.testing.VirtualClock`), the service in-process with no worker, so that a day passes
at once and exactly.
"""

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anthropic
import httpx2
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from conveyor.jobs import App, MemoryStore
from conveyor.jobs.model import Counts, Job, JobItem, JobOptions
from conveyor.service import ServiceConfig, create_app
from conveyor.service.anthropic_errors import AnthropicErrors, error_type
from conveyor.service.config import Connection
from conveyor.service.message_batch_records import MessageBatchRecord, Refused
from conveyor.service.message_batches import batch_object, result_lines
from conveyor.service.message_requests import request_problem, split_requests
from conveyor.service.paging import page
from conveyor.service.problems import Problem, handlers
from conveyor.testing import VirtualClock

from .anthropic_kit import request

# -- paging ---------------------------------------------------------------------------------


@given(n=st.integers(0, 30), limit=st.integers(1, 7))
def test_following_after_pages_visits_every_object_once_in_order(n, limit):
    """From the top, after=last_id pages through the list exactly, has_more until the end."""
    ids = [f"b{i:02}" for i in range(n)]
    seen: list[str] = []
    cut = page(ids, limit=limit)
    while True:
        shown = ids[cut.start : cut.stop]
        seen += shown
        if not cut.has_more:
            break
        cut = page(ids, limit=limit, after=shown[-1])
    assert seen == ids


@given(n=st.integers(1, 30), limit=st.integers(1, 7))
def test_following_before_pages_from_the_oldest_reaches_the_newest(n, limit):
    """From the oldest, before=first_id pages back to the top, each page the closest ones."""
    ids = [f"b{i:02}" for i in range(n)]
    seen: list[str] = []
    cut = page(ids, limit=limit, before=ids[-1])
    while True:
        shown = ids[cut.start : cut.stop]
        assert len(shown) == min(limit, n - 1 - len(seen))
        seen = shown + seen
        if not cut.has_more:
            break
        cut = page(ids, limit=limit, before=shown[0])
    assert seen == ids[:-1]


def test_a_cursor_not_in_the_list_gives_an_empty_last_page():
    """A deleted or foreign cursor: no objects, no more."""
    cut = page(["a", "b"], limit=5, after="zz")
    assert (cut.start, cut.stop, cut.has_more) == (0, 0, False)


# -- the checks of a batch's requests -------------------------------------------------------


def test_each_kind_of_malformed_request_is_named():
    """The problem names the request's place and the field, as Anthropic's messages do."""
    good = request("a")
    cases = {
        "requests.3: must be an object": "x",
        "requests.3.extra: Extra inputs": {**good, "extra": 1},
        "requests.3.custom_id: must be 1 to 64": {**good, "custom_id": ""},
        "'dup' is used by more than one": {**good, "custom_id": "dup"},
        "requests.3.params: must be an object": {"custom_id": "a", "params": None},
        "requests.3.params.model": request("a", model=""),
        "requests.3.params.max_tokens": request("a", max_tokens=True),
        "requests.3.params.messages": request("a", messages="hi"),
        "requests.3.params.stream": request("a", stream="yes"),
    }
    for expected, bad in cases.items():
        problem = request_problem(3, bad, {"dup"})
        assert problem is not None
        assert expected in problem, (expected, problem)
    assert request_problem(3, good, {"dup"}) is None
    assert request_problem(3, request("a", stream=False), set()) is None


def test_split_keeps_the_valid_requests_in_order_and_each_refused_ones_place():
    """Valid ones become http items; refused ones (repeats, the task's check) keep their place."""
    requests = [
        request("a"),
        request("twice"),
        {"custom_id": 7},
        request("b", "too big"),
        request("twice"),
        request("c"),
    ]
    headers = {"anthropic-version": "2023-06-01"}

    def check(item: Any) -> str | None:
        return "too large" if item["body"]["messages"][0]["content"] == "too big" else None

    items, refused = split_requests(requests, headers, check)
    assert [i["custom_id"] for i in items] == ["a", "c"]
    assert items[0] == {
        "custom_id": "a",
        "method": "POST",
        "url": "/v1/messages",
        "body": requests[0]["params"],
        "headers": headers,
    }
    assert [(r.position, r.custom_id) for r in refused] == [
        (1, "twice"),
        (2, None),
        (3, "b"),
        (4, "twice"),
    ]
    assert refused[2].message == "requests.3: too large"


# -- counts and results ---------------------------------------------------------------------


def job(status: Any, **counts: int) -> Job:
    total = sum(counts.values())
    return Job(
        id="j",
        task="http:mock",
        options=JobOptions(),
        status=status,
        counts=Counts(total=total, **counts),
        finished_at=5.0 if status in {"completed", "failed", "cancelled"} else None,
    )


def record(**fields: Any) -> MessageBatchRecord:
    made = MessageBatchRecord.new(now=1.0, total=fields.pop("total", 6))
    made.job_id = "j"
    for name, value in fields.items():
        setattr(made, name, value)
    return made


def test_the_counts_always_add_up_to_the_batchs_requests():
    """Live counts, a failed job, an expiry, a vanished job, all refused: the sum is the total."""
    refused = [Refused(0, "x", "bad")]
    cases = [
        (record(refused=refused), job("running", pending=2, running=1, succeeded=2)),
        (record(refused=refused), job("failed", pending=3, succeeded=2)),
        (record(refused=refused, expired_at=2.0), job("cancelled", succeeded=2, cancelled=3)),
        (record(refused=refused), None),
        (record(total=1, refused=refused, job_id=None, ended_at=1.0), None),
    ]
    for made, found in cases:
        counts = batch_object(made, found, "http://x/")["request_counts"]
        assert sum(counts.values()) == made.total, (made, found, counts)
    failed = batch_object(*cases[1], "http://x/")["request_counts"]
    assert (failed["processing"], failed["errored"]) == (0, 4)
    expired = batch_object(*cases[2], "http://x/")["request_counts"]
    assert (expired["expired"], expired["canceled"]) == (3, 0)


def test_the_batch_object_has_anthropics_fields_and_rfc3339_times():
    """Ended: ended_at and an absolute results_url under the service's (mounted) base URL."""
    shown = batch_object(record(ended_at=5.0), job("completed", succeeded=6), "http://h/api/")
    assert shown == {
        "id": shown["id"],
        "type": "message_batch",
        "processing_status": "ended",
        "request_counts": {
            "processing": 0,
            "succeeded": 6,
            "errored": 0,
            "canceled": 0,
            "expired": 0,
        },
        "ended_at": "1970-01-01T00:00:05.000000Z",
        "created_at": "1970-01-01T00:00:01.000000Z",
        "expires_at": "1970-01-02T00:00:01.000000Z",
        "archived_at": None,
        "cancel_initiated_at": None,
        "results_url": f"http://h/api/v1/messages/batches/{shown['id']}/results",
    }
    running = batch_object(record(cancel_initiated_at=3.0), job("cancelling", running=6), "")
    assert running["processing_status"] == "canceling"
    assert running["results_url"] is None


def test_results_come_in_the_batchs_order_each_errored_or_settled_as_anthropic_says():
    """Refused requests take their places among the job's items; failures keep their status."""
    items = [
        JobItem(job_id="j", index=0, input={"custom_id": "a"}, state="succeeded",
                result={"status_code": 200, "body": {"type": "message"}}),
        JobItem(job_id="j", index=1, input={"custom_id": "b"}, state="failed",
                error_type="HTTPStatusError", error_message="HTTP 529: Overloaded"),
        JobItem(job_id="j", index=2, input={"custom_id": "c"}, state="failed",
                error_type="TimeoutError", error_message="no answer in 60 s"),
        JobItem(job_id="j", index=3, input={"custom_id": "d"}, state="cancelled"),
    ]  # fmt: skip

    async def results(_job_id: str) -> AsyncIterator[JobItem]:
        for item in items:
            yield item

    service: Any = SimpleNamespace(jobs=SimpleNamespace(results=results))
    made = record(total=7, refused=[Refused(0, "r0", "bad 0"), Refused(2, None, "bad 2"),
                                    Refused(6, "r6", "bad 6")])  # fmt: skip

    async def main() -> list[bytes]:
        return [x async for x in result_lines(service, made, job("cancelled", succeeded=1))]

    lines = [json.loads(x) for x in asyncio.run(main())]
    assert [x["custom_id"] for x in lines] == ["r0", "a", None, "b", "c", "d", "r6"]
    kinds = [(x["result"]["type"], x["result"].get("error", {}).get("error", {}).get("type"))
             for x in lines]  # fmt: skip
    assert kinds == [
        ("errored", "invalid_request_error"),
        ("succeeded", None),
        ("errored", "invalid_request_error"),
        ("errored", "overloaded_error"),
        ("errored", "timeout_error"),
        ("canceled", None),
        ("errored", "invalid_request_error"),
    ]
    assert lines[3]["result"]["error"] == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }


# -- errors ---------------------------------------------------------------------------------


def test_error_types_follow_anthropics_statuses():
    """Each status gets Anthropic's error type; unknown ones fall to invalid_request or api."""
    assert [error_type(s) for s in (400, 401, 403, 404, 413, 429, 500, 529, 418, 502)] == [
        "invalid_request_error",
        "authentication_error",
        "permission_error",
        "not_found_error",
        "request_too_large",
        "rate_limit_error",
        "api_error",
        "overloaded_error",
        "invalid_request_error",
        "api_error",
    ]


def test_a_problem_under_v1_messages_is_rewritten_and_others_are_left_alone():
    """Status, Retry-After and detail kept in Anthropic's shape; other paths stay problem+json."""

    async def outage(_: Request) -> Response:
        raise Problem(503, "the store is away", headers={"Retry-After": "5"})

    routes = [Route("/v1/messages/batches", outage), Route("/v1/jobs", outage)]
    asgi = Starlette(routes=routes, exception_handlers=handlers())

    async def main() -> list[httpx2.Response]:
        transport = httpx2.ASGITransport(app=AnthropicErrors(asgi))
        async with httpx2.AsyncClient(transport=transport, base_url="http://localhost") as http:
            return [await http.get(p) for p in ("/v1/messages/batches", "/v1/jobs")]

    ours, theirs = asyncio.run(main())
    assert ours.status_code == 503
    assert ours.headers["retry-after"] == "5"
    assert ours.headers["content-type"] == "application/json"
    assert ours.json() == {
        "type": "error",
        "error": {"type": "api_error", "message": "the store is away"},
    }
    assert theirs.headers["content-type"] == "application/problem+json"


# -- expiry on the virtual clock ------------------------------------------------------------


def test_the_sweep_expires_a_batch_at_its_24_hours_on_the_virtual_clock(tmp_path: Path):
    """No worker runs it: a day later the sweep ends it, every request expired, nothing waited."""
    clock = VirtualClock(wall_start_s=1_000_000.0)

    async def main() -> Any:
        cfg = ServiceConfig(
            store="memory:",
            keys_file=None,
            files_dir=tmp_path / "files",
            connections=(Connection(name="mock", base_url="http://127.0.0.1:9"),),
            batch_sweep_s=3600,
        )
        asgi = create_app(cfg, app=App(), store=MemoryStore(), worker=False)
        async with asgi.router.lifespan_context(asgi):
            http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=asgi))
            client = anthropic.AsyncAnthropic(
                api_key="unused", base_url="http://localhost", http_client=http
            )
            made = await client.messages.batches.create(requests=[request("a"), request("b")])
            await asyncio.sleep(86_399)
            before = await client.messages.batches.retrieve(made.id)
            await asyncio.sleep(2)  # the sweep's wake-up is the batch's expiry
            [row] = await asgi.state.service.files.store.batches("default", "anthropic")
            record = json.loads(row.record)
            after = await client.messages.batches.retrieve(made.id)
            lines = [r async for r in await client.messages.batches.results(made.id)]
            await client.close()
            return made, before, record, after, lines

    made, before, record, after, lines = clock.run(main())
    assert before.processing_status == "in_progress"
    assert before.request_counts.processing == 2
    assert record["expired_at"] == record["created_at"] + 86_400  # swept, not read
    assert after.processing_status == "ended"
    assert after.ended_at == made.expires_at
    assert after.request_counts.expired == 2
    assert [r.result.type for r in lines] == ["expired", "expired"]
