"""The batch runner's exceptions, under Conveyor's one root.

The tree::

    ConveyorError                 conveyor.errors
    ├── BatchError                the batch was refused before anything was sent
    │   ├── InputError            the requests file: unreadable, duplicate custom_ids, a
    │   │                         relative url with no base URL, ...
    │   └── OutputError           the results file: not writable, in use by another run, not
    │                             a results file, or a write failed during the run
    ├── HTTPStatusError           an answer that is not 2xx (carries status_code and headers,
    │                             which the retry policy and the limiter read)
    └── TransportError            no answer at all: refused, unreachable, dropped (also a
                                  ConnectionError, so it is retried by default)

Every message names the line or the file, and says how to fix the problem.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ConveyorError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from .response import Response

__all__ = [
    "AnswerTooLarge",
    "BatchError",
    "HTTPStatusError",
    "InputError",
    "OutputError",
    "TransportError",
]


class BatchError(ConveyorError):
    """The batch cannot run as asked; nothing was sent. The message says why and the fix."""


class InputError(BatchError):
    """The requests file cannot be used as it is (the message names the lines)."""


class OutputError(BatchError):
    """The results file cannot be written (the message names the file and the fix)."""


class HTTPStatusError(ConveyorError):
    """The API answered with a status other than 2xx.

    Attributes:
        status_code: the HTTP status (`conveyor.is_transient` retries 408/425/429/5xx).
        headers: every response header, lower-cased names (``retry-after`` and the rate-limit
            headers are read from here by the retry policy and the limiter).
        response: the answer as it is written to the results file.

    `redact` keeps secrets out of the message (see `Response.error_text`).
    """

    def __init__(
        self,
        response: Response,
        headers: Mapping[str, str],
        *,
        redact: Callable[[str], str] | None = None,
    ) -> None:
        self.status_code = response.status_code
        self.headers = headers
        self.response = response
        super().__init__(f"HTTP {response.status_code}: {response.error_text(redact)}")


class TransportError(ConveyorError, ConnectionError):
    """No answer: the connection was refused, timed out at the socket, or was dropped."""


class AnswerTooLarge(ConveyorError):
    """An answer's body, or what its encoding decodes to, passes the transport's bound.

    Not retried: the same request would be answered the same way. `how` says what passed
    the bound of `limit` bytes.
    """

    def __init__(self, how: str, limit: int) -> None:
        self.limit = limit
        super().__init__(
            f"the answer to this request is larger than Conveyor takes from one answer,"
            f" {limit // 2**20} MiB: {how}. An API's answer to one request is far smaller:"
            " check the request's url"
        )
