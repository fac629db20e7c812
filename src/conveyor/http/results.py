"""The result line: one JSON object per request, pure.

::

    {"custom_id": "req-1",
     "error": null,                         # or {"code": "http_429", "message": "..."}
     "response": {"status_code": 200, "headers": {...}, "body": {...}},   # null if no answer
     "attempts": 1,                         # attempts made (0: never sent)
     "latency_ms": 412.5}                   # the last attempt's (null: never sent)

`error` is null exactly when the request succeeded. It comes second, before the answer, so that
resuming reads only the start of each line (and so do people scanning the file). Error codes:

=====================  ===============================================================
``http_<status>``      the API answered non-2xx (its answer is in ``response``)
``connection_error``   no answer: refused, unreachable, dropped
``timeout``            the attempt ran past ``--timeout``
``circuit_open``       not sent: the API failed many times in a row (the last reason is
                       in the message)
``cost_too_large``     not sent: the request costs more tokens than ``--tpm`` allows
``answer_<reason>``    a 2xx answer that failed the check (``--require-finish-reason``,
                       ``--require-json``): ``answer_length``, ``answer_content_filter``,
                       ``answer_refusal``, ``answer_finish_reason``, ``answer_not_json``
                       (the answer is in ``response``); ``answer_check_mismatch``: the
                       check names no reason this API gives (not retried);
                       ``answer_too_deep``: its JSON nests more than 128 deep (not kept)
``insufficient_quota`` the API's quota is exhausted: not written by ``conveyor run`` nor
                       the jobs, which halt instead and leave the requests they did not
                       finish pending (`conveyor.limits.quota`)
``invalid_line``       not sent: the line is not a request (the message says why)
``error``              anything else (the message has the exception's type)
=====================  ===============================================================
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from .. import errors as core
from .errors import HTTPStatusError, TransportError
from .response import Response

if TYPE_CHECKING:
    from ..engine.report import Outcome
    from .request import InvalidLine, Request

__all__ = ["error_fields", "invalid_result", "outcome_result", "result_line"]

_encode = msgspec.json.Encoder().encode


def result_line(
    custom_id: str,
    *,
    response: Response | None,
    error: tuple[str, str] | None,
    attempts: int,
    latency_s: float | None,
) -> str:
    """Return one result as a JSON line, without the newline.

    >>> result_line("a", response=None, error=("timeout", "too slow"), attempts=2, latency_s=1.5)
    '{"custom_id":"a","error":{"code":"timeout","message":"too slow"},"response":null,\
"attempts":2,"latency_ms":1500.0}'
    """
    record: dict[str, Any] = {
        "custom_id": custom_id,
        "error": None if error is None else {"code": error[0], "message": error[1]},
        "response": None if response is None else response.to_dict(),
        "attempts": attempts,
        "latency_ms": None if latency_s is None else round(latency_s * 1000.0, 3),
    }
    # Text stays readable (no \\u escapes but for control characters); newlines are escaped,
    # so one result is always one line.
    return _encode(record).decode()


def error_fields(  # noqa: PLR0911 - one return per kind of error reads best
    error: BaseException, *, last_failure: str | None = None
) -> tuple[str, str]:
    """Return the ``(code, message)`` of a failed request (see the module docstring).

    `last_failure` is the latest failure seen by any request, which explains an open circuit.
    """
    if isinstance(error, core.InvalidAnswer):
        return f"answer_{error.reason}", str(error)
    if isinstance(error, core.QuotaExhausted):
        return "insufficient_quota", str(error)
    if isinstance(error, HTTPStatusError):
        return f"http_{error.status_code}", str(error)
    if isinstance(error, TransportError):
        return "connection_error", str(error)
    if isinstance(error, core.AttemptTimeout | core.DeadlineExceeded):
        return "timeout", str(error)
    if isinstance(error, core.CircuitOpen):
        reason = f"; the last failure: {last_failure}" if last_failure else ""
        return "circuit_open", f"not sent: {error}{reason}"
    if isinstance(error, core.ConfigError):  # the limiter refuses a cost no window can admit
        return "cost_too_large", f"not sent: {error}"
    return "error", f"{type(error).__name__}: {error}"


def outcome_result(outcome: Outcome[Request, Response], *, last_failure: str | None) -> str:
    """Return the result line of a request that settled (succeeded or failed, not cancelled).

    One answered by the response cache (no attempt) has no latency.
    """
    request = outcome.item
    error = outcome.error
    if error is None:  # no attempt: answered by the response cache, never sent
        return result_line(
            request.custom_id,
            response=outcome.value,
            error=None,
            attempts=outcome.attempts,
            latency_s=outcome.latency_s if outcome.attempts else None,
        )
    response = error.response if isinstance(error, HTTPStatusError) else None
    if isinstance(error, core.InvalidAnswer) and isinstance(error.answer, Response):
        response = error.answer
    sent = outcome.attempts > 0 and not isinstance(error, core.CircuitOpen | core.ConfigError)
    return result_line(
        request.custom_id,
        response=response,
        error=error_fields(error, last_failure=last_failure),
        attempts=outcome.attempts,
        latency_s=outcome.latency_s if sent else None,
    )


def invalid_result(line: InvalidLine) -> str:
    """Return the result line of a line that could not be sent."""
    return result_line(
        line.custom_id,
        response=None,
        error=("invalid_line", line.message),
        attempts=0,
        latency_s=None,
    )
