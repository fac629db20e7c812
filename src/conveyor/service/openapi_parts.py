"""The pieces the OpenAPI document is written with, shared by `openapi` and `openapi_messages`."""

from __future__ import annotations

from typing import Any

__all__ = ["REF", "json_answer", "path_id", "ref"]

#: Where a model's schema stands in the document (pydantic's ``ref_template``).
REF = "#/components/schemas/{model}"


def ref(model: str) -> dict[str, str]:
    """A reference to `model`'s schema in the document's components."""
    return {"$ref": REF.format(model=model)}


def json_answer(
    description: str, model: str, headers: dict[str, Any] | None = None
) -> dict[str, Any]:
    """An ``application/json`` answer of `model`, with its `headers` if any."""
    out: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": ref(model)}},
    }
    if headers:
        out["headers"] = headers
    return out


def path_id(name: str, description: str) -> dict[str, Any]:
    """A required id in the path (``{job_id}``): a string of 1 to 64 characters."""
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "string", "minLength": 1, "maxLength": 64},
        "description": description,
    }
