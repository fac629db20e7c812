"""The batch runner behind ``conveyor run``: JSONL files of HTTP requests, sent within limits.

>>> plan = prepare(BatchFiles(input=Path("requests.jsonl"), output=Path("results.jsonl")),
...                Endpoint(base_url="https://api.openai.com"))  # doctest: +SKIP
>>> result = await Batch(plan, limits=BatchLimits(requests_per_minute=500),
...                      retry=conveyor.Retry(attempts=6)).run()  # doctest: +SKIP

What users call: the request line format and token estimate (`parse_line`, `estimate_tokens`,
`Request`, `InvalidLine`), the transport seam (`Transport`, `RawAnswer`: any async function of
that shape replaces the network), the result line (`result_line`), the results file with resume
(`prepare`, `Plan`), the run (`Batch`, its live counts `BatchTally`) and the errors. Everything
else is the runner's own: the names once exported here for it still import, with a
`DeprecationWarning` naming where they live. The transport is imported only when a run starts.
"""

from typing import Any

from .batch import Batch as Batch
from .batch import BatchResult as BatchResult
from .client import RawAnswer as RawAnswer
from .client import Transport as Transport
from .config import BatchFiles as BatchFiles
from .config import BatchLimits as BatchLimits
from .config import Endpoint as Endpoint
from .errors import BatchError as BatchError
from .errors import HTTPStatusError as HTTPStatusError
from .errors import InputError as InputError
from .errors import OutputError as OutputError
from .errors import TransportError as TransportError
from .plan import Plan as Plan
from .plan import prepare as prepare
from .request import InvalidLine as InvalidLine
from .request import Request as Request
from .request import estimate_tokens as estimate_tokens
from .request import parse_line as parse_line
from .response import Response as Response
from .results import result_line as result_line
from .tally import BatchTally as BatchTally

__all__ = [
    "Batch",
    "BatchError",
    "BatchFiles",
    "BatchLimits",
    "BatchResult",
    "BatchTally",
    "Endpoint",
    "HTTPStatusError",
    "InputError",
    "InvalidLine",
    "OutputError",
    "Plan",
    "RawAnswer",
    "Request",
    "Response",
    "Transport",
    "TransportError",
    "estimate_tokens",
    "parse_line",
    "prepare",
    "result_line",
]

#: Names this package exported once that are the runner's own: the module each lives in now.
_MOVED = {
    "AiohttpTransport": "client",
    "HttpTask": "client",
    "Progress": "tally",
    "RateMeter": "tally",
    "snapshot": "tally",
    "check_writable": "output",
    "write_text_atomic": "output",
}


def __getattr__(name: str) -> Any:
    """A name once exported here still imports, with a warning naming its module."""
    module = _MOVED.get(name)
    if module is None:
        msg = f"module 'conveyor.http' has no attribute {name!r}"
        raise AttributeError(msg)
    import importlib  # noqa: PLC0415 - only for the deprecated names
    import warnings  # noqa: PLC0415

    where = f"conveyor.http.{module}"
    warnings.warn(
        f"conveyor.http.{name} is internal to the batch runner and will leave conveyor.http;"
        f" import it from {where} if you must (Batch(transport=...) is the seam for tests)",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(importlib.import_module(where), name)
