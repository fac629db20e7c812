"""Anthropic's Message Batches API bodies, as pydantic models (the rest are in ``schemas.py``).

Anthropic's published shapes; they are the source of the OpenAPI document's schemas for these
routes (``openapi_messages.py``), and the schemathesis run checks the answers against them.
The answers themselves are built as plain dicts (`message_batches.batch_object`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

__all__ = [
    "AnthropicErrorOut",
    "MessageBatchCreate",
    "MessageBatchDeleted",
    "MessageBatchList",
    "MessageBatchOut",
]


class AnthropicErrorBody(BaseModel):
    """What went wrong: Anthropic's error type and a message that says what to fix."""

    type: Literal[
        "invalid_request_error",
        "authentication_error",
        "billing_error",
        "permission_error",
        "not_found_error",
        "request_too_large",
        "rate_limit_error",
        "timeout_error",
        "api_error",
        "overloaded_error",
    ]
    message: str


class AnthropicErrorOut(BaseModel):
    """An error of the Message Batches API, in Anthropic's shape."""

    type: Literal["error"]
    error: AnthropicErrorBody


class MessageBatchRequestIn(BaseModel):
    """One request of a batch: a Messages request and the id its result is matched by.

    A request that breaks these rules is not refused with the batch: its result is
    ``errored`` (``invalid_request_error``), and the others run.
    """

    custom_id: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$", description="unique in the batch")
    params: dict[str, Any] = Field(
        description="the body of a POST /v1/messages: model, max_tokens, messages... (no stream)"
    )


class MessageBatchCreate(BaseModel):
    """A batch to create: its requests, inline."""

    requests: list[MessageBatchRequestIn] = Field(min_length=1, max_length=100_000)


class MessageBatchRequestCounts(BaseModel):
    """The batch's requests by outcome so far (live); they add up to its requests."""

    processing: int
    succeeded: int
    errored: int
    canceled: int
    expired: int


class MessageBatchOut(BaseModel):
    """A Message Batch, as Anthropic's API shows it (times are RFC 3339)."""

    id: str
    type: Literal["message_batch"]
    processing_status: Literal["in_progress", "canceling", "ended"]
    request_counts: MessageBatchRequestCounts
    ended_at: str | None
    created_at: str
    expires_at: str
    archived_at: str | None
    cancel_initiated_at: str | None
    results_url: str | None = Field(description="set once the batch has ended")


class MessageBatchList(BaseModel):
    """A page of batches, newest first."""

    data: list[MessageBatchOut]
    has_more: bool
    first_id: str | None
    last_id: str | None


class MessageBatchDeleted(BaseModel):
    """A batch deleted."""

    id: str
    type: Literal["message_batch_deleted"]
