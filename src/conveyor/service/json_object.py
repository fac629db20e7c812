"""A JSON object from outside (a request body, a line of a batch file), read in one step."""

from __future__ import annotations

from typing import Any

from .._json import BadJSON, loads

__all__ = ["json_object"]


def json_object(raw: bytes) -> dict[str, Any]:
    """The JSON object `raw` holds; `BadJSON` whose ``problem`` follows a subject otherwise.

    >>> json_object(b'{"a": 1}')
    {'a': 1}
    >>> try:
    ...     json_object(b"[1]")
    ... except BadJSON as exc:
    ...     print("the body", exc.problem)
    the body is not a JSON object
    """
    value = loads(raw)
    if not isinstance(value, dict):
        raise BadJSON("is not a JSON object")
    return value
