"""The OpenAPI 3.1 document, built from the pydantic models in ``schemas.py``.

Every route, parameter, body, status and media type the service answers with is here; the
tests run schemathesis against it (no 5xx, every answer matching its schema).
"""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import models_json_schema

from .._version import __version__
from .openapi_messages import MODELS as MESSAGE_MODELS
from .openapi_messages import message_batch_paths
from .openapi_parts import REF, json_answer, path_id, ref
from .openapi_views import MODELS as VIEW_MODELS
from .openapi_views import view_paths
from .schemas import (
    BatchCreate,
    BatchList,
    BatchOut,
    BudgetIn,
    FileOut,
    HealthOut,
    ItemPage,
    JobCreate,
    JobOut,
    JobPage,
    OpenAIErrorOut,
    OpenAIFileDeleted,
    OpenAIFileList,
    OpenAIFileOut,
    ProblemOut,
    RetryOut,
    ServiceOut,
    StreamTokenOut,
)
from .schemas_messages import MessageBatchCreate

__all__ = ["build_openapi"]

_INPUTS = (JobCreate, BatchCreate, BudgetIn, MessageBatchCreate)


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": ref("ProblemOut")}},
    }


_JOB_ID = path_id("job_id", "the job's id")


def _sse(description: str, events: list[str], data: dict[str, Any]) -> dict[str, Any]:
    """A ``text/event-stream`` answer: the schema is of one event, its data JSON."""
    event = {
        "type": "object",
        "required": ["event", "data"],
        "properties": {
            "event": {"type": "string", "enum": events},
            "id": {"type": "string", "pattern": "^[0-9]+$"},
            "retry": {"type": "integer"},
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": data,
            },
        },
    }
    return {"description": description, "content": {"text/event-stream": {"schema": event}}}


def _common(secured: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        # Any route: a control character in the path or query (problem+json); the OpenAI
        # routes also answer their own 400s in OpenAI's error shape.
        "400": {
            "description": "a bad request: the path or a query parameter holds a control"
            " character (NUL...), or, on the OpenAI routes, what OpenAI answers 400",
            "content": {
                "application/problem+json": {"schema": ref("ProblemOut")},
                "application/json": {"schema": ref("OpenAIErrorOut")},
            },
        },
        "503": _problem(
            "the job store cannot be reached now (type urn:conveyor:problem:store-unavailable,"
            " Retry-After: 5); nothing was lost: try again. Or the store refuses this"
            " service (type urn:conveyor:problem:store-unusable): the operator must fix it"
        ),
    }
    if secured:
        out["401"] = _problem("no API key, or not a valid one")
    else:
        out["421"] = _problem(
            "the Host header is not a loopback name nor an allowed host (no API keys)"
        )
    return out


def _openai(description: str) -> dict[str, Any]:
    return json_answer(description, "OpenAIErrorOut")


_FILE_ID = path_id("file_id", "the file's id (`file-...`)")
_BATCH_ID = path_id("batch_id", "the batch's id (`batch_...`)")


def _page_params(limit_max: int, limit_default: int) -> list[dict[str, Any]]:
    return [
        {
            "name": "after",
            "in": "query",
            "schema": {"type": "string"},
            "description": "the last id of the previous page",
        },
        {
            "name": "limit",
            "in": "query",
            "schema": {
                "type": "integer",
                "minimum": 1,
                "maximum": limit_max,
                "default": limit_default,
            },
        },
    ]


def _openai_paths(common: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's Files and Batch API: OpenAI's object shapes and error bodies."""
    bad = _openai("a parameter is wrong: the message says which (OpenAI's error shape)")
    file_404 = _openai("no such file for this tenant")
    batch_404 = _openai("no such batch for this tenant")
    return {
        "/v1/files": {
            "post": {
                "operationId": "createFile",
                "summary": "Upload a file: OpenAI's multipart upload, or a JSONL job input",
                "description": (
                    "multipart/form-data (OpenAI's Files API, `purpose` and `file`): kept as"
                    " sent, checked when a batch is made from it; answers 200 with OpenAI's"
                    " file object. Any other body is a job input, checked line by line;"
                    " answers 201."
                ),
                "requestBody": {
                    "required": True,
                    "content": {
                        # Any bytes on the wire: the service checks each line is JSON (422).
                        "application/jsonl": {
                            "schema": {"description": "JSONL: one JSON value per line"}
                        },
                        "multipart/form-data": {
                            "schema": {
                                "type": "object",
                                "required": ["file", "purpose"],
                                # Any other field is a 400, `expires_after` included.
                                "additionalProperties": False,
                                "properties": {
                                    "file": {"type": "string", "format": "binary"},
                                    "purpose": {"type": "string", "enum": ["batch", "user_data"]},
                                },
                            }
                        },
                    },
                },
                "responses": {
                    "200": json_answer("the file (multipart upload)", "OpenAIFileOut"),
                    "201": json_answer("the file (job input)", "FileOut"),
                    "400": bad,
                    **common,
                    "413": _problem("the file is over max_file_bytes"),
                    "422": _problem("a line is not JSON, or the file has no items"),
                },
            },
            "get": {
                "operationId": "listFiles",
                "summary": "The caller's files, newest first (order=asc: oldest), a page at a time",
                "parameters": [
                    {"name": "purpose", "in": "query", "schema": {"type": "string"}},
                    {
                        "name": "order",
                        "in": "query",
                        "schema": {"type": "string", "enum": ["asc", "desc"], "default": "desc"},
                    },
                    *_page_params(10_000, 10_000),
                ],
                "responses": {
                    "200": json_answer("a page of files", "OpenAIFileList"),
                    "400": bad,
                    **common,
                },
            },
        },
        "/v1/files/{file_id}": {
            "get": {
                "operationId": "getFile",
                "summary": "A file's record",
                "parameters": [_FILE_ID],
                "responses": {
                    "200": json_answer("the file", "OpenAIFileOut"),
                    **common,
                    "404": file_404,
                },
            },
            "delete": {
                "operationId": "deleteFile",
                "summary": "Delete a file",
                "parameters": [_FILE_ID],
                "responses": {
                    "200": json_answer("the file, deleted", "OpenAIFileDeleted"),
                    **common,
                    "404": file_404,
                },
            },
        },
        "/v1/files/{file_id}/content": {
            "get": {
                "operationId": "getFileContent",
                "summary": "A file's bytes (a batch's output and error files are JSONL)",
                "parameters": [_FILE_ID],
                "responses": {
                    "200": {
                        # OpenAI's document gives this media type; the bytes are the file's.
                        "description": (
                            "the file's bytes as uploaded or written (a batch's files are"
                            " JSONL), sent as application/json as OpenAI's document says"
                        ),
                        "content": {"application/json": {}},
                    },
                    **common,
                    "404": file_404,
                },
            }
        },
        "/v1/batches": {
            "post": {
                "operationId": "createBatch",
                "summary": "Create a batch from an uploaded file: a job through a connection",
                "description": (
                    "A malformed input file answers 200 with a `failed` batch whose errors"
                    " name each bad line, as OpenAI answers it."
                ),
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": ref("BatchCreate")}},
                },
                "responses": {
                    "200": json_answer(
                        "the batch (in_progress, or failed with per-line errors)", "BatchOut"
                    ),
                    "400": bad,
                    "413": _problem("the body is over max_body_bytes (refused as it streams)"),
                    "429": _openai(
                        "the tenant has the most active jobs allowed (a batch is a job);"
                        " nothing was made"
                    ),
                    **common,
                },
            },
            "get": {
                "operationId": "listBatches",
                "summary": "The caller's batches, newest first, a page at a time",
                "parameters": _page_params(100, 20),
                "responses": {
                    "200": json_answer("a page of batches", "BatchList"),
                    "400": bad,
                    **common,
                },
            },
        },
        "/v1/batches/{batch_id}": {
            "get": {
                "operationId": "getBatch",
                "summary": "A batch: status, request counts, output and error files",
                "parameters": [_BATCH_ID],
                "responses": {
                    "200": json_answer("the batch", "BatchOut"),
                    **common,
                    "404": batch_404,
                },
            }
        },
        "/v1/batches/{batch_id}/cancel": {
            "post": {
                "operationId": "cancelBatch",
                "summary": "Cancel a batch: what finished is kept, the rest is cancelled",
                "parameters": [_BATCH_ID],
                "responses": {
                    "200": json_answer("the batch (cancelling, or cancelled)", "BatchOut"),
                    **common,
                    "404": batch_404,
                },
            }
        },
    }


def build_openapi(*, secured: bool) -> dict[str, Any]:
    """The document; `secured`: the endpoints need an API key (bearer, or ``x-api-key``)."""
    _, defs = models_json_schema(
        [
            (m, "validation" if m in _INPUTS else "serialization")
            for m in (
                JobCreate,
                JobOut,
                JobPage,
                ItemPage,
                RetryOut,
                StreamTokenOut,
                FileOut,
                ServiceOut,
                HealthOut,
                ProblemOut,
                OpenAIErrorOut,
                OpenAIFileOut,
                OpenAIFileList,
                OpenAIFileDeleted,
                BatchCreate,
                BatchOut,
                BatchList,
                BudgetIn,
                *MESSAGE_MODELS,
                *VIEW_MODELS,
            )
        ],
        ref_template=REF,
    )
    schemas = defs["$defs"]
    common = _common(secured)
    job_404 = _problem("no such job for this tenant (another tenant's job answers the same)")
    bad = _problem("a parameter is wrong; the detail says how")
    location = {"Location": {"schema": {"type": "string"}, "description": "the job's URL"}}
    paths: dict[str, Any] = {
        "/healthz": {
            "get": {
                "operationId": "getHealth",
                "summary": "Whether the store, Redis and the worker are well (no key needed)",
                "security": [],
                "responses": {
                    "200": json_answer("ok, or degraded (Redis or the worker)", "HealthOut"),
                    "503": json_answer("down: the store cannot be reached", "HealthOut"),
                    **({} if secured else {"421": common["421"]}),
                },
            }
        },
        "/v1/service": {
            "get": {
                "operationId": "getService",
                "summary": "The tasks jobs can run, the limits, and whether keys are needed",
                "responses": {
                    "200": json_answer("what the service offers", "ServiceOut"),
                    **common,
                },
            }
        },
        "/v1/jobs": {
            "post": {
                "operationId": "createJob",
                "summary": "Create a job; answers at once, with the job queued",
                "parameters": [
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,255}$"},
                        "description": "the same key (per tenant) returns the same job",
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": ref("JobCreate")}},
                },
                "responses": {
                    "202": json_answer(
                        "the job, queued (or the job of this Idempotency-Key)",
                        "JobOut",
                        {
                            **location,
                            "Idempotent-Replayed": {
                                "schema": {"type": "string", "enum": ["true"]},
                                "description": "set when the Idempotency-Key was seen before",
                            },
                        },
                    ),
                    **common,
                    "413": _problem("the body, or the number of items, is over the limit"),
                    "415": _problem("the body is not JSON"),
                    "422": _problem("the job is not valid: the detail names the field or item"),
                    "429": _problem("the tenant has the most active jobs allowed"),
                },
            },
            "get": {
                "operationId": "listJobs",
                "summary": "The caller's jobs, newest first, a page at a time",
                "parameters": [
                    {
                        "name": "status",
                        "in": "query",
                        "schema": {
                            "type": "string",
                            "enum": [
                                "queued",
                                "running",
                                "cancelling",
                                "completed",
                                "failed",
                                "cancelled",
                            ],
                        },
                    },
                    {"name": "task", "in": "query", "schema": {"type": "string"}},
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50},
                    },
                    {
                        "name": "cursor",
                        "in": "query",
                        "schema": {"type": "string", "pattern": "^[0-9a-f-]{1,64}$"},
                        "description": "the next_cursor of the previous page",
                    },
                ],
                "responses": {
                    "200": json_answer("a page of jobs", "JobPage"),
                    **common,
                    "422": bad,
                },
            },
        },
        "/v1/jobs/{job_id}": {
            "get": {
                "operationId": "getJob",
                "summary": "Status, progress, step, counts, summary",
                "parameters": [_JOB_ID],
                "responses": {"200": json_answer("the job", "JobOut"), **common, "404": job_404},
            }
        },
        "/v1/jobs/{job_id}/events": {
            "get": {
                "operationId": "jobEvents",
                "summary": "Server-Sent Events: progress as it happens, then the final state",
                "description": (
                    "Each event's id is the job's version: reconnect with Last-Event-ID to"
                    " resume. Events: `progress` (data: the job), then one `done` (data: the"
                    " job in its final status). A browser's EventSource, which cannot send"
                    " the API key, passes a stream token instead (?token=)."
                ),
                "parameters": [
                    _JOB_ID,
                    {
                        "name": "token",
                        "in": "query",
                        "schema": {"type": "string", "maxLength": 200},
                        "description": "a stream token of this job (POST .../stream-token)",
                    },
                    {
                        "name": "Last-Event-ID",
                        "in": "header",
                        "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"},
                    },
                ],
                "responses": {
                    "200": _sse("the event stream", ["progress", "done"], ref("JobOut")),
                    **common,
                    "401": _problem("no API key nor a valid stream token of this job"),
                    "404": job_404,
                    "422": bad,
                },
            }
        },
        "/v1/jobs/{job_id}/stream-token": {
            "post": {
                "operationId": "jobStreamToken",
                "summary": "A short-lived token that opens this job's event stream, and only it",
                "parameters": [_JOB_ID],
                "responses": {
                    "201": json_answer("the token, and the stream's URL with it", "StreamTokenOut"),
                    **common,
                    "404": job_404,
                },
            }
        },
        "/v1/jobs/{job_id}/results": {
            "get": {
                "operationId": "jobResults",
                "summary": "The items and how they ended: streamed JSONL, or a page of JSON",
                "parameters": [
                    _JOB_ID,
                    {
                        "name": "state",
                        "in": "query",
                        "schema": {
                            "type": "string",
                            "enum": ["pending", "running", "succeeded", "failed", "cancelled"],
                        },
                    },
                    {
                        "name": "format",
                        "in": "query",
                        "schema": {"type": "string", "enum": ["jsonl", "json"], "default": "jsonl"},
                    },
                    {
                        "name": "cursor",
                        "in": "query",
                        "schema": {"type": "string", "pattern": "^(-1|[0-9]{1,18})$"},
                        "description": "the next_cursor of the previous page (format=json), or"
                        " the index after which the stream starts (format=jsonl)",
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                        "description": "items per page (format=json); the first items after the"
                        " cursor (format=jsonl, which without it streams them all)",
                    },
                ],
                "responses": {
                    "200": {
                        "description": "one item per line (jsonl), or a page (json)",
                        "content": {
                            "application/jsonl": {"schema": {"type": "string"}},
                            "application/json": {"schema": ref("ItemPage")},
                        },
                    },
                    **common,
                    "404": job_404,
                    "422": bad,
                },
            }
        },
        "/v1/jobs/{job_id}/cancel": {
            "post": {
                "operationId": "cancelJob",
                "summary": "Cancel: pending items at once, in-flight ones by their worker",
                "parameters": [_JOB_ID],
                "responses": {"202": json_answer("the job", "JobOut"), **common, "404": job_404},
            }
        },
        "/v1/jobs/{job_id}/retry": {
            "post": {
                "operationId": "retryJob",
                "summary": "Run the job's failed items again, under the same job",
                "parameters": [_JOB_ID],
                "responses": {
                    "202": json_answer("how many items were put back, and the job", "RetryOut"),
                    **common,
                    "404": job_404,
                    "409": _problem("the job was cancelled or could not run: nothing to retry"),
                    "429": _problem(
                        "the job is completed and its tenant has the most active jobs"
                        " allowed: retrying would reopen it"
                    ),
                },
            }
        },
        "/v1/jobs/{job_id}/budget": {
            "post": {
                "operationId": "setJobBudget",
                "summary": "Set the job's spend budget: a job that reached it goes on",
                "parameters": [_JOB_ID],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": ref("BudgetIn")}},
                },
                "responses": {
                    "202": json_answer("the job, with its new budget", "JobOut"),
                    **common,
                    "404": job_404,
                    "409": _problem(
                        "the job was cancelled or could not run: its items will not run"
                    ),
                    "415": _problem("the body is not application/json"),
                    "422": _problem("the body is not a budget (a number > 0, or null)"),
                },
            }
        },
        **view_paths(common, bad=bad, job_id=_JOB_ID, job_404=job_404),
        **_openai_paths(common),
        **message_batch_paths(secured=secured),
        "/v1/events": {
            "get": {
                "operationId": "jobsEvents",
                "summary": "Server-Sent Events: the newest jobs, again whenever one changes",
                "parameters": [
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 100},
                    }
                ],
                "responses": {
                    "200": _sse(
                        "`jobs` events: the newest jobs",
                        ["jobs"],
                        {
                            "type": "object",
                            "required": ["data"],
                            "properties": {"data": {"type": "array", "items": ref("JobOut")}},
                        },
                    ),
                    **common,
                    "422": bad,
                },
            }
        },
    }
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "Conveyor job service",
            "version": __version__,
            "description": (
                "Durable jobs over HTTP: submit, follow live, cancel, retry, read results."
                " Errors are application/problem+json, with a detail that says what to fix."
            ),
        },
        "paths": paths,
        "components": {"schemas": schemas},
    }
    if secured:
        doc["components"]["securitySchemes"] = {
            "apiKey": {"type": "http", "scheme": "bearer", "description": "a Conveyor API key"},
            "xApiKey": {
                "type": "apiKey",
                "in": "header",
                "name": "x-api-key",
                "description": "the same key, as Anthropic's SDK sends it",
            },
        }
        doc["security"] = [{"apiKey": []}, {"xApiKey": []}]
    return doc
