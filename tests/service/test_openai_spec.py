"""OpenAI's own OpenAPI document for files and batches, against the service.

Schemathesis reads the extract of OpenAI's published document (``specs/``, from
openai/openai-openapi) and sends generated requests, valid and invalid, to the service
in-process (ASGI, API keys on): no 5xx, and every answer the document describes has its media
type and its schema (no ``null`` where the document allows none). Where OpenAI's live API
differs from its document, the service follows the document (docs/reference.md says where).
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

from conveyor.jobs import MemoryStore
from conveyor.service import ServiceConfig, create_app
from conveyor.service.batches import BatchRecord, BatchRecords
from conveyor.service.keys import add_key

from .conftest import make_app

SPEC = Path(__file__).parent / "specs" / "openai-files-batches.openapi.json"

# Built at import: schemathesis reads the document to generate the tests.
_DIR = Path(tempfile.mkdtemp(prefix="conveyor-openai-spec-"))
_KEYS = _DIR / "keys.json"
ASGI = create_app(
    ServiceConfig(store="memory:", keys_file=_KEYS, files_dir=_DIR / "files"),
    app=make_app(),
    store=MemoryStore(),
    worker=False,
)


_, KEY = add_key(_KEYS, tenant="acme")
AUTH = {"Authorization": f"Bearer {KEY}"}
# OpenAI's paths are under its server's ``/v1``: the service's are too.
schema = schemathesis.openapi.from_path(SPEC)
schema.app = ASGI
schema.config.update(base_url="http://localhost/v1")

_LINES = b'{"custom_id": "a", "method": "POST", "url": "/v1/embeddings", "body": {}}\n{x\n'


async def _upload() -> str:
    """A batch input file of tenant acme, as uploaded."""

    async def chunks() -> AsyncIterator[bytes]:
        yield _LINES

    info = await ASGI.state.service.files.save(
        "acme", chunks(), max_bytes=1 << 20, filename="in.jsonl", purpose="batch"
    )
    return str(info.id)


async def _seed() -> tuple[str, str, str]:
    """An uploaded batch file of tenant acme, a failed batch from it and a completed one."""
    service = ASGI.state.service
    file_id = await _upload()
    records = BatchRecords(service.files.store, "acme")
    failed = BatchRecord.new(
        endpoint="/v1/embeddings", input_file_id=file_id, window="24h", metadata=None, now=1.0
    )
    failed.status, failed.total, failed.times["failed_at"] = "failed", 2, 1.0
    failed.errors = [{"code": "invalid_json_line", "message": "x", "param": None, "line": 2}]
    await records.add(failed)
    done = BatchRecord.new(
        endpoint="/v1/embeddings", input_file_id=file_id, window="24h", metadata={"a": "b"}, now=2.0
    )
    done.status, done.total, done.completed, done.output_file_id = "completed", 1, 1, file_id
    done.times |= {"in_progress_at": 2.0, "finalizing_at": 3.0, "completed_at": 4.0}
    await records.add(done)
    return file_id, failed.id, done.id


FILE_ID, FAILED_ID, DONE_ID = asyncio.run(_seed())

# OpenAI's document gives each operation its 200 only: its errors (4xx, in OpenAI's error
# shape) are documented apart from it, so an answer's status is not checked against it. A body
# valid by the document may still name a file or batch this tenant does not have: a 4xx by
# design, so "valid data was refused" does not apply either.
_NOT_IN_THE_DOCUMENT = [checks.status_code_conformance, checks.positive_data_acceptance]


@schema.parametrize()
@hypothesis.settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(hypothesis.HealthCheck),
    derandomize=True,
)
def test_every_operation_answers_as_openai_documents_it(case):
    """No 5xx, and no media type or body outside OpenAI's document, for any request."""
    case.call_and_validate(headers=AUTH, excluded_checks=_NOT_IN_THE_DOCUMENT)


@schema.include(path_regex=r"\{(file|batch)_id\}").parametrize()
@hypothesis.settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=list(hypothesis.HealthCheck),
    derandomize=True,
)
def test_an_existing_file_and_batches_answer_as_openai_documents_them(case):
    """A real file's record, and real batches (failed, completed, cancelled), match the document."""
    # A delete takes a file of its own: the others read FILE_ID after it.
    file_id = asyncio.run(_upload()) if case.method == "DELETE" else FILE_ID
    ids = {"file_id": file_id, "batch_id": DONE_ID if "cancel" in case.path else FAILED_ID}
    params = case.path_parameters or {}
    case.path_parameters = {k: ids.get(k, v) for k, v in params.items()}
    excluded = [*_NOT_IN_THE_DOCUMENT, checks.negative_data_rejection]
    if case.path.endswith("/content"):
        # The document gives the content as a JSON string; the bytes are the JSONL file as
        # OpenAI's live API and SDKs send and read it (only its media type is OpenAI's).
        excluded.append(checks.response_schema_conformance)
    case.call_and_validate(headers=AUTH, excluded_checks=excluded)


async def _get(path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=ASGI)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        return await client.get(path, headers=AUTH)


def test_a_file_has_no_null_and_its_content_the_documented_media_type():
    """A file shows no ``expires_at``/``status_details`` null; its bytes come as OpenAI says."""
    shown = asyncio.run(_get(f"/v1/files/{FILE_ID}")).json()
    assert shown["status"] == "processed"
    assert "expires_at" not in shown
    assert "status_details" not in shown
    content = asyncio.run(_get(f"/v1/files/{FILE_ID}/content"))
    assert content.headers["content-type"].split(";")[0] == "application/json"
    assert content.content == _LINES


def test_an_empty_page_of_files_or_batches_has_string_ids():
    """An empty page's ``first_id`` and ``last_id`` are strings (the document allows no null)."""
    # No file has purpose vision; no batch is older than the failed one (a page is newest first).
    for path in ("/v1/files?purpose=vision", f"/v1/batches?after={FAILED_ID}"):
        page = asyncio.run(_get(path)).json()
        assert (page["data"], page["first_id"], page["last_id"]) == ([], "", ""), path


def test_a_batch_shows_what_it_has_and_nothing_null_but_its_metadata():
    """A completed batch has its times and output file; what it lacks is absent, not null."""
    shown = asyncio.run(_get(f"/v1/batches/{DONE_ID}")).json()
    assert [k for k, v in shown.items() if v is None] == []
    assert (shown["output_file_id"], shown["completed_at"], shown["metadata"]) == (
        FILE_ID,
        4,
        {"a": "b"},
    )
    for absent in ("errors", "error_file_id", "failed_at", "expired_at", "cancelled_at"):
        assert absent not in shown, absent
    failed = asyncio.run(_get(f"/v1/batches/{FAILED_ID}")).json()
    assert failed["metadata"] is None
    assert json.dumps(failed["errors"]["data"][0]["line"]) == "2"
    assert "output_file_id" not in failed
