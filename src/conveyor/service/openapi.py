"""The OpenAPI 3.1 document, built from the pydantic models in ``schemas.py``.

Every route, parameter, body, status and media type the service answers with is here; the
tests run schemathesis against it (no 5xx, every answer matching its schema).
"""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import models_json_schema

from .. import __version__
from .schemas import (
    FileOut,
    ItemPage,
    JobCreate,
    JobOut,
    JobPage,
    ProblemOut,
    RetryOut,
    ServiceOut,
)

__all__ = ["build_openapi"]

_REF = "#/components/schemas/{model}"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(model=name)}


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": _ref("ProblemOut")}},
    }


def _json(description: str, model: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": _ref(model)}},
    }
    if headers:
        out["headers"] = headers
    return out


_JOB_ID = {
    "name": "job_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "minLength": 1, "maxLength": 64},
    "description": "the job's id",
}


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
    out: dict[str, Any] = {}
    if secured:
        out["401"] = _problem("no API key, or not a valid one")
    return out


def build_openapi(*, secured: bool) -> dict[str, Any]:
    """The document; `secured`: the job endpoints need a bearer API key."""
    _, defs = models_json_schema(
        [
            (m, "validation" if m is JobCreate else "serialization")
            for m in (
                JobCreate,
                JobOut,
                JobPage,
                ItemPage,
                RetryOut,
                FileOut,
                ServiceOut,
                ProblemOut,
            )
        ],
        ref_template=_REF,
    )
    schemas = defs["$defs"]
    common = _common(secured)
    job_404 = _problem("no such job for this tenant (another tenant's job answers the same)")
    bad = _problem("a parameter is wrong; the detail says how")
    location = {"Location": {"schema": {"type": "string"}, "description": "the job's URL"}}
    paths: dict[str, Any] = {
        "/v1/service": {
            "get": {
                "operationId": "getService",
                "summary": "The tasks jobs can run, the limits, and whether keys are needed",
                "responses": {"200": _json("what the service offers", "ServiceOut"), **common},
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
                    "content": {"application/json": {"schema": _ref("JobCreate")}},
                },
                "responses": {
                    "202": _json(
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
                "responses": {"200": _json("a page of jobs", "JobPage"), **common, "422": bad},
            },
        },
        "/v1/jobs/{job_id}": {
            "get": {
                "operationId": "getJob",
                "summary": "Status, progress, step, counts, summary",
                "parameters": [_JOB_ID],
                "responses": {"200": _json("the job", "JobOut"), **common, "404": job_404},
            }
        },
        "/v1/jobs/{job_id}/events": {
            "get": {
                "operationId": "jobEvents",
                "summary": "Server-Sent Events: progress as it happens, then the final state",
                "description": (
                    "Each event's id is the job's version: reconnect with Last-Event-ID to"
                    " resume. Events: `progress` (data: the job), then one `done` (data: the"
                    " job in its final status)."
                ),
                "parameters": [
                    _JOB_ID,
                    {
                        "name": "Last-Event-ID",
                        "in": "header",
                        "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"},
                    },
                ],
                "responses": {
                    "200": _sse("the event stream", ["progress", "done"], _ref("JobOut")),
                    **common,
                    "404": job_404,
                    "422": bad,
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
                        "description": "the next_cursor of the previous page (format=json)",
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                        "description": "items per page (format=json)",
                    },
                ],
                "responses": {
                    "200": {
                        "description": "one item per line (jsonl), or a page (json)",
                        "content": {
                            "application/jsonl": {"schema": {"type": "string"}},
                            "application/json": {"schema": _ref("ItemPage")},
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
                "responses": {"202": _json("the job", "JobOut"), **common, "404": job_404},
            }
        },
        "/v1/jobs/{job_id}/retry": {
            "post": {
                "operationId": "retryJob",
                "summary": "Run the job's failed items again, under the same job",
                "parameters": [_JOB_ID],
                "responses": {
                    "202": _json("how many items were put back, and the job", "RetryOut"),
                    **common,
                    "404": job_404,
                    "409": _problem("the job was cancelled or failed: nothing to retry"),
                },
            }
        },
        "/v1/files": {
            "post": {
                "operationId": "createFile",
                "summary": "Upload a JSONL file of items (streamed to disk)",
                "requestBody": {
                    "required": True,
                    "content": {
                        # Any bytes on the wire: the service checks each line is JSON (422).
                        "application/jsonl": {
                            "schema": {"description": "JSONL: one JSON value per line"}
                        },
                    },
                },
                "responses": {
                    "201": _json("the file", "FileOut"),
                    **common,
                    "413": _problem("the file is over max_file_bytes"),
                    "422": _problem("a line is not JSON, or the file has no items"),
                },
            }
        },
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
                            "properties": {"data": {"type": "array", "items": _ref("JobOut")}},
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
            "apiKey": {"type": "http", "scheme": "bearer", "description": "a Conveyor API key"}
        }
        doc["security"] = [{"apiKey": []}]
    return doc
