"""What a batch run is built of, from its configuration; `conveyor.http.batch` runs the parts.

The limiter, each request's cost for it, how answers' usage settles it, the HTTP session, and
the refusal, before anything is sent, of an answer check that can never pass.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from ..limits.limiter import Limiter
from .errors import InputError

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..llm.hooks import LlmOptions
    from .config import BatchLimits
    from .plan import Plan
    from .request import Request

__all__ = [
    "CONNECT_TIMEOUT_S",
    "cost_function",
    "refuse_a_check_that_cannot_pass",
    "request_costs",
    "run_limiter",
    "usage_policy",
]

#: The longest a connection may take to open; past it, the attempt fails (and is retried).
CONNECT_TIMEOUT_S = 30.0


def run_limiter(limits: BatchLimits) -> Limiter:
    """The run's one limiter, every request's every attempt through it."""
    return Limiter.from_config(limits.limiter_config_for("api"))


def _cost(request: Request) -> float:
    return request.cost


def request_costs(request: Request) -> dict[str, float]:
    """A request's cost in each token dimension: ``tokens``, ``input_tokens``, ``output_tokens``.

    ``tokens`` is its estimate (or its line's own ``cost``), ``output_tokens`` the answer's
    bound (``max_tokens``, at most the whole), ``input_tokens`` the rest. A limiter takes the
    dimensions it limits and ignores the others, so one mapping serves an OpenAI limiter
    (tokens) and an Anthropic one (input and output) alike: the jobs' http task charges it.
    """
    out = request.output_tokens
    return {"tokens": request.cost, "input_tokens": request.cost - out, "output_tokens": out}


def cost_function(limits: BatchLimits) -> Callable[[Request], float | dict[str, float]]:
    """A request's cost for the run's limiter: its tokens, split when input and output are limited.

    Split, the output part is the answer's bound (``max_tokens``), the input part the rest
    (`request_costs`); otherwise one number, which the run's one limiter books as tokens.
    """
    return request_costs if limits.splits_tokens else _cost


def usage_policy(limits: BatchLimits, limiter: Limiter) -> Literal["raise", "both"] | None:
    """How answers' ``usage`` settles token costs: only with a token limit to keep."""
    if not limiter.limits_tokens:
        return None
    return "both" if limits.refund_unused_tokens else "raise"


def refuse_a_check_that_cannot_pass(llm: LlmOptions, plan: Plan) -> None:
    """Raise `InputError` if the answer check can never pass on the answers of some lines.

    Such a check would fail and retry every one of those requests, each attempt paid for.
    """
    from ..llm.validate import AnswerCheck  # noqa: PLC0415 - conveyor.llm imports this package

    check = llm.validate
    if not isinstance(check, AnswerCheck):
        return
    mismatch = check.problem(plan.apis)
    if mismatch is None:
        return
    where = ", ".join(f"{api} from line {line}" for api, line in sorted(plan.apis.items()) if api)
    msg = (
        f"the answer check (--require-finish-reason) can never pass on {plan.files.input}'s"
        f" requests ({where}): {mismatch}; nothing was sent"
    )
    raise InputError(msg)
