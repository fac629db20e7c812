"""A Message Batch's create body, checked as Anthropic checks it, and its requests as job items.

Pure: no I/O, no clock. `batch_requests` refuses a body that is not a batch (`Problem` 400:
the whole batch); `request_problem` says what is wrong with one request, which then fails
alone (its result is ``errored``, and it is never sent); `split_requests` makes the valid
ones the items of the batch's job (``POST /v1/messages`` of the ``http`` task, the request's
``params`` as the body) and keeps the refused ones apart, each with its place in the batch.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from .._json import BadJSON
from .json_object import json_object
from .message_batch_records import Refused
from .problems import Problem

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["MAX_REQUESTS", "batch_requests", "request_problem", "split_requests"]

#: The most requests a batch holds (Anthropic's).
MAX_REQUESTS = 100_000
_CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def batch_requests(body: bytes, most: int) -> list[Any]:
    """The ``requests`` of a create body, or `Problem` 400 saying what is wrong with it."""
    try:
        data = json_object(body)
    except BadJSON as exc:
        raise Problem(400, f"the body {exc.problem}: send a JSON object with 'requests'") from None
    extra = sorted(set(data) - {"requests"})
    if extra:
        raise Problem(400, f"{extra[0]}: Extra inputs are not permitted (only 'requests')")
    requests = data.get("requests")
    if not isinstance(requests, list):
        raise Problem(400, "requests: Field required, a list of {custom_id, params} objects")
    if not requests:
        raise Problem(400, "requests: List should have at least 1 item")
    if len(requests) > most:
        raise Problem(
            400,
            f"requests: {len(requests):,} requests, over the {most:,} a batch may hold:"
            " split them into several batches",
        )
    return requests


def request_problem(position: int, request: object, repeated: set[str]) -> str | None:  # noqa: PLR0911
    """What is wrong with one request of a batch, or None. Pure.

    >>> request_problem(0, {"custom_id": "a", "params": {}}, set())
    'requests.0.params.model: Field required (a non-empty string)'
    """
    where = f"requests.{position}"
    if not isinstance(request, dict):
        return f"{where}: must be an object with 'custom_id' and 'params'"
    extra = sorted(set(request) - {"custom_id", "params"})
    if extra:
        return f"{where}.{extra[0]}: Extra inputs are not permitted"
    custom_id = request.get("custom_id")
    if not isinstance(custom_id, str) or not _CUSTOM_ID.match(custom_id):
        return f"{where}.custom_id: must be 1 to 64 letters, digits, '_' or '-'"
    if custom_id in repeated:
        return (
            f"{where}.custom_id: {custom_id!r} is used by more than one request of this"
            " batch; each request needs its own"
        )
    params = request.get("params")
    if not isinstance(params, dict):
        return f"{where}.params: must be an object (a Messages request: model, max_tokens...)"
    model, most, messages = params.get("model"), params.get("max_tokens"), params.get("messages")
    if not isinstance(model, str) or not model:
        return f"{where}.params.model: Field required (a non-empty string)"
    if isinstance(most, bool) or not isinstance(most, int) or most < 1:
        return f"{where}.params.max_tokens: Field required (a whole number >= 1)"
    if not isinstance(messages, list) or not messages:
        return f"{where}.params.messages: Field required (a non-empty list)"
    if params.get("stream") not in {None, False}:
        return f"{where}.params.stream: streaming is not supported in a batch"
    return None


def split_requests(
    requests: list[Any], headers: dict[str, str], check: Callable[[Any], str | None]
) -> tuple[list[dict[str, Any]], list[Refused]]:
    """The valid requests as the job's items, in order, and the refused ones. Pure."""
    seen: dict[str, int] = {}
    for request in requests:
        custom_id = request.get("custom_id") if isinstance(request, dict) else None
        if isinstance(custom_id, str):
            seen[custom_id] = seen.get(custom_id, 0) + 1
    repeated = {c for c, n in seen.items() if n > 1}
    items: list[dict[str, Any]] = []
    refused: list[Refused] = []
    for position, request in enumerate(requests):
        problem = request_problem(position, request, repeated)
        if problem is None:
            item = {
                "custom_id": request["custom_id"],
                "method": "POST",
                "url": "/v1/messages",
                "body": request["params"],
                "headers": headers,
            }
            problem = check(item)
            if problem is None:
                items.append(item)
                continue
            problem = f"requests.{position}: {problem}"
        custom_id = request.get("custom_id") if isinstance(request, dict) else None
        refused.append(
            Refused(position, custom_id if isinstance(custom_id, str) else None, problem)
        )
    return items, refused
