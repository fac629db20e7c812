"""The OpenAPI paths of the dashboard's views: a job's series, the limiters and the workers.

A web app that embeds the job API draws the same charts from them; `openapi.build_openapi`
adds these paths and their models to the document.
"""

from __future__ import annotations

from typing import Any

from .openapi_parts import json_answer
from .schemas_views import LimitersOut, SeriesOut, WorkersOut

__all__ = ["MODELS", "view_paths"]

#: The models these paths name, for the document's schemas.
MODELS = (SeriesOut, LimitersOut, WorkersOut)


def view_paths(
    common: dict[str, Any], *, bad: dict[str, Any], job_id: dict[str, Any], job_404: dict[str, Any]
) -> dict[str, Any]:
    """The paths, with the document's `common` answers, its 422 (`bad`) and its job id."""

    def get(operation: str, summary: str, answer: dict[str, Any], **more: Any) -> dict[str, Any]:
        responses = {"200": answer, **common, "422": bad, **more.pop("responses", {})}
        return {
            "get": {"operationId": operation, "summary": summary, **more, "responses": responses}
        }

    return {
        "/v1/jobs/{job_id}/series": get(
            "jobSeries",
            "Items the job settled per second, its limits and what is in flight",
            json_answer("the job's series", "SeriesOut"),
            parameters=[job_id],
            responses={"404": job_404},
        ),
        "/v1/limiters": get(
            "listLimiters",
            "The shared limiters now, with the rate each admitted over the last minutes",
            json_answer("the limiters", "LimitersOut"),
        ),
        "/v1/workers": get(
            "listWorkers",
            "The workers the store knows (by their leases), and this process's own",
            json_answer("the workers", "WorkersOut"),
        ),
    }
