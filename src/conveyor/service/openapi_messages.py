"""The OpenAPI paths of Anthropic's Message Batches API (``/v1/messages/batches``).

Every refusal on these routes is in Anthropic's error shape (`anthropic_errors`), so each
error status is documented with ``AnthropicErrorOut``; `openapi.build_openapi` adds these
paths and their models to the document.
"""

from __future__ import annotations

from typing import Any

from .openapi_parts import json_answer, path_id, ref
from .schemas_messages import (
    AnthropicErrorOut,
    MessageBatchCreate,
    MessageBatchDeleted,
    MessageBatchList,
    MessageBatchOut,
)

__all__ = ["MODELS", "message_batch_paths"]

#: The models these paths name, for the document's schemas.
MODELS = (
    AnthropicErrorOut,
    MessageBatchCreate,
    MessageBatchDeleted,
    MessageBatchList,
    MessageBatchOut,
)
_BATCH_ID = path_id("batch_id", "the batch's id (`msgbatch_...`)")


def _error(description: str) -> dict[str, Any]:
    return json_answer(description, "AnthropicErrorOut")


def message_batch_paths(*, secured: bool) -> dict[str, Any]:
    """The paths; `secured`: they need an API key (``x-api-key`` or a bearer token)."""
    common = {
        "400": _error(
            "invalid_request_error: a parameter is wrong (the message says which), or the path"
            " or query holds a control character"
        ),
        "503": _error(
            "api_error: the job store cannot be reached now (Retry-After: 5), or refuses this"
            " service; nothing was lost"
        ),
        **(
            {"401": _error("authentication_error: no API key, or not a valid one")}
            if secured
            else {"421": _error("the Host is not a loopback name nor an allowed host")}
        ),
    }
    missing = _error("not_found_error: no such batch for this tenant")
    batch = [_BATCH_ID]
    return {
        "/v1/messages/batches": {
            "post": {
                "operationId": "createMessageBatch",
                "summary": "Create a Message Batch: a job of its requests through a connection",
                "description": (
                    "A malformed request errors alone (its result is `errored`); a body that"
                    " is not a batch is a 400. With several connections, the header"
                    " `x-conveyor-connection` names the one to use."
                ),
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": ref("MessageBatchCreate")}},
                },
                "responses": {
                    "200": json_answer("the batch (in_progress)", "MessageBatchOut"),
                    **common,
                    "413": _error("request_too_large: the body is over 256 MB"),
                    "429": _error(
                        "rate_limit_error: the tenant has the most active jobs allowed (a batch"
                        " is a job); nothing was made"
                    ),
                },
            },
            "get": {
                "operationId": "listMessageBatches",
                "summary": "The caller's Message Batches, newest first, a page at a time",
                "parameters": [
                    {
                        "name": "after_id",
                        "in": "query",
                        "schema": {"type": "string"},
                        "description": "the page just after this batch (older ones)",
                    },
                    {
                        "name": "before_id",
                        "in": "query",
                        "schema": {"type": "string"},
                        "description": "the page just before this batch (newer ones)",
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 20},
                    },
                ],
                "responses": {
                    "200": json_answer("a page of batches", "MessageBatchList"),
                    **common,
                },
            },
        },
        "/v1/messages/batches/{batch_id}": {
            "get": {
                "operationId": "getMessageBatch",
                "summary": "A Message Batch: its status and request counts (live)",
                "parameters": batch,
                "responses": {
                    "200": json_answer("the batch", "MessageBatchOut"),
                    **common,
                    "404": missing,
                },
            },
            "delete": {
                "operationId": "deleteMessageBatch",
                "summary": "Delete an ended Message Batch (400 while it is processing)",
                "parameters": batch,
                "responses": {
                    "200": json_answer("the batch, deleted", "MessageBatchDeleted"),
                    **common,
                    "404": missing,
                },
            },
        },
        "/v1/messages/batches/{batch_id}/cancel": {
            "post": {
                "operationId": "cancelMessageBatch",
                "summary": "Cancel a Message Batch: what finished is kept, the rest is canceled",
                "parameters": batch,
                "responses": {
                    "200": json_answer("the batch (canceling, or ended)", "MessageBatchOut"),
                    **common,
                    "404": missing,
                },
            },
        },
        "/v1/messages/batches/{batch_id}/results": {
            "get": {
                "operationId": "getMessageBatchResults",
                "summary": "A Message Batch's results, once ended: one JSONL line per request",
                "parameters": batch,
                "responses": {
                    "200": {
                        "description": "`{custom_id, result}` per line; result.type is"
                        " succeeded, errored, canceled or expired",
                        "content": {"application/jsonl": {"schema": {"type": "string"}}},
                    },
                    **common,
                    "404": missing,
                },
            },
        },
    }
