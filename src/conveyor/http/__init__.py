"""The batch runner behind ``conveyor run``: JSONL files of HTTP requests, sent within limits.

>>> plan = prepare(BatchFiles(input=Path("requests.jsonl"), output=Path("results.jsonl")),
...                Endpoint(base_url="https://api.openai.com"))  # doctest: +SKIP
>>> result = await Batch(plan, limits=BatchLimits(requests_per_minute=500),
...                      retry=conveyor.Retry(attempts=6)).run()  # doctest: +SKIP

The parts: the request line format and token estimate (`parse_line`, `estimate_tokens`), the
HTTP task and its transport seam (`HttpTask`, `AiohttpTransport`, `Transport`), the result line
(`result_line`), the results file with resume (`prepare`, `Plan`), and the run (`Batch`).
aiohttp is imported only when a run starts.
"""

from .batch import Batch as Batch
from .batch import BatchResult as BatchResult
from .client import AiohttpTransport as AiohttpTransport
from .client import HttpTask as HttpTask
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
from .output import check_writable as check_writable
from .output import write_text_atomic as write_text_atomic
from .plan import Plan as Plan
from .plan import prepare as prepare
from .request import InvalidLine as InvalidLine
from .request import Request as Request
from .request import estimate_tokens as estimate_tokens
from .request import parse_line as parse_line
from .response import Response as Response
from .results import result_line as result_line
from .tally import BatchTally as BatchTally
from .tally import Progress as Progress
from .tally import RateMeter as RateMeter
from .tally import snapshot as snapshot

__all__ = [
    "AiohttpTransport",
    "Batch",
    "BatchError",
    "BatchFiles",
    "BatchLimits",
    "BatchResult",
    "BatchTally",
    "Endpoint",
    "HTTPStatusError",
    "HttpTask",
    "InputError",
    "InvalidLine",
    "OutputError",
    "Plan",
    "Progress",
    "RateMeter",
    "RawAnswer",
    "Request",
    "Response",
    "Transport",
    "TransportError",
    "check_writable",
    "estimate_tokens",
    "parse_line",
    "prepare",
    "result_line",
    "snapshot",
    "write_text_atomic",
]
