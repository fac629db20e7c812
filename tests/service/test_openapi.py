"""The OpenAPI document against the service itself.

Schemathesis sends generated requests

(valid and invalid) to every operation and checks each answer: no 5xx, and status codes,
media types, headers and bodies as documented. In-process (ASGI), with API keys on.
"""

import asyncio
import json
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import hypothesis
import schemathesis
from schemathesis import checks
from starlette.routing import Route

from conveyor.jobs import MemoryStore
from conveyor.jobs.ids import new_id
from conveyor.jobs.model import ItemResult, JobOptions, NewJob
from conveyor.service import ServiceConfig, create_app
from conveyor.service.batches import BatchRecord, BatchRecords
from conveyor.service.keys import add_key
from conveyor.service.message_batch_records import (
    MessageBatchRecord,
    MessageBatchRecords,
    Refused,
)

from .conftest import make_app

# Built at import: schemathesis reads the document to generate the tests.
_DIR = Path(tempfile.mkdtemp(prefix="conveyor-openapi-"))
_, KEY = add_key(_DIR / "keys.json", tenant="acme")
ASGI = create_app(
    ServiceConfig(
        store="memory:",
        keys_file=_DIR / "keys.json",
        files_dir=_DIR / "files",
        # The job list's stream ends after its first event here, so that a test reads it whole.
        list_events_max_s=0.01,
    ),
    app=make_app(),
    store=MemoryStore(),
    worker=False,
)
schema = schemathesis.openapi.from_asgi("/openapi.json", ASGI)


async def _seed(store: MemoryStore) -> str:
    """A completed job of tenant acme, with results: the job endpoints then reach real data."""
    new = NewJob(id=new_id(1.0), task="echo", options=JobOptions(), created_at=1.0, tenant="acme")
    items = [json.dumps(v) for v in (1, {"text": "caf\u00e9"}, [1.5, None])]
    job = await store.create_job(new, items)
    await store.claim("seed", limit=10, lease_s=60)
    results = [ItemResult(job.id, i, "succeeded", 1, 0.01, text) for i, text in enumerate(items)]
    await store.record("seed", results)
    return job.id


JOB_ID = asyncio.run(_seed(ASGI.state.service.jobs.store))


async def _seed_batch() -> tuple[str, str]:
    """An uploaded batch file of tenant acme and a batch made from it (failed: a bad line)."""
    service = ASGI.state.service

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"custom_id": "a", "method": "POST", "url": "/v1/embeddings", "body": {}}\n{x\n'

    info = await service.files.save(
        "acme", chunks(), max_bytes=1 << 20, filename="in.jsonl", purpose="batch"
    )
    record = BatchRecord.new(
        endpoint="/v1/embeddings", input_file_id=info.id, window="24h", metadata=None, now=1.0
    )
    record.status, record.total, record.times["failed_at"] = "failed", 2, 1.0
    record.errors = [{"code": "invalid_json_line", "message": "x", "param": None, "line": 2}]
    await BatchRecords(service.files.store, "acme").add(record)
    return info.id, record.id


FILE_ID, BATCH_ID = asyncio.run(_seed_batch())


async def _seed_message_batch() -> str:
    """An ended Message Batch of tenant acme: its one request was refused, so it has no job."""
    record = MessageBatchRecord.new(now=1.0, total=1)
    record.refused, record.ended_at = [Refused(0, "a", "requests.0.params: x")], 1.0
    await MessageBatchRecords(ASGI.state.service.files.store, "acme").add(record)
    return record.id


MESSAGE_BATCH_ID = asyncio.run(_seed_message_batch())


# Uploads are JSONL text: a generated string is sent as it is, anything else as its JSON.
schemathesis.serializer.alias("application/jsonl", "text/plain")


@schema.parametrize()
@hypothesis.settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(hypothesis.HealthCheck),
    derandomize=True,
)
def test_every_operation_answers_as_documented(case):
    """No 5xx and no answer outside the document, for valid and invalid requests alike."""
    # Every default check but one: a job valid by the schema may still name a task, file or
    # limiter this service does not have, which is a 422 by design.
    case.call_and_validate(
        headers={"Authorization": f"Bearer {KEY}"},
        excluded_checks=[checks.positive_data_acceptance],
    )


@schema.include(path_regex=r"^/v1/jobs/\{job_id\}").parametrize()
@hypothesis.settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=list(hypothesis.HealthCheck),
    derandomize=True,
)
def test_operations_on_an_existing_job_answer_as_documented(case):
    """A real job's results, events, cancel and retry answer generated input as documented."""
    case.path_parameters = {**(case.path_parameters or {}), "job_id": JOB_ID}
    # The id and the key are replaced by valid ones, so a case generated as invalid for them
    # may now be valid: "invalid data was accepted" does not apply; every other check does.
    case.call_and_validate(
        headers={"Authorization": f"Bearer {KEY}"},
        excluded_checks=[checks.positive_data_acceptance, checks.negative_data_rejection],
    )


@schema.include(path_regex=r"^/v1/(files/\{file_id\}|batches/\{batch_id\})").parametrize()
@hypothesis.settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=list(hypothesis.HealthCheck),
    derandomize=True,
)
def test_operations_on_an_existing_file_and_batch_answer_as_documented(case):
    """A real file's record and content, and a real batch, cancel included, match the document."""
    ids = {"file_id": FILE_ID, "batch_id": BATCH_ID}
    params = case.path_parameters or {}
    case.path_parameters = {k: ids.get(k, v) for k, v in params.items()}
    case.call_and_validate(
        headers={"Authorization": f"Bearer {KEY}"},
        excluded_checks=[checks.positive_data_acceptance, checks.negative_data_rejection],
    )


@schema.include(path_regex=r"^/v1/messages/batches/\{batch_id\}").parametrize()
@hypothesis.settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=list(hypothesis.HealthCheck),
    derandomize=True,
)
def test_operations_on_an_existing_message_batch_answer_as_documented(case):
    """A real Message Batch's read, cancel, results and delete match the document."""
    case.path_parameters = {**(case.path_parameters or {}), "batch_id": MESSAGE_BATCH_ID}
    case.call_and_validate(
        headers={"x-api-key": KEY},
        excluded_checks=[checks.positive_data_acceptance, checks.negative_data_rejection],
    )


def test_every_route_of_the_api_is_in_the_document():
    """A web app's generated client knows every operation: each route and method is there.

    The routes left out of the document are the page, the document itself, the metrics
    scrape, the favicon and the dashboard's files.
    """
    doc = json.loads(_get("/openapi.json"))
    served = {
        (route.path, method.lower())
        for route in ASGI.routes
        if isinstance(route, Route) and route.include_in_schema
        for method in route.methods or ()
        if method != "HEAD"
    }
    documented = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    assert served - documented == set()
    assert documented - served == set()


def _get(path: str) -> str:
    """`path`'s body from the service, in-process."""

    async def main() -> str:
        transport = httpx.ASGITransport(app=ASGI)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            answer = await client.get(path, headers={"Authorization": f"Bearer {KEY}"})
            answer.raise_for_status()
            return answer.text

    return asyncio.run(main())
