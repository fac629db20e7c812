"""The quota stage: whether an error means the API's quota (or spend cap) is used up.

Written once for every path that sends calls through a limiter (``conveyor run``, a job's
``http`` task, the wrapped SDK clients): such an error is never retried and halts the run,
with the `QuotaExhausted` its limiter halted with (`conveyor.limits.learning`), so every
path says the same thing. What counts as "quota" is the retry policy's classifier's reading
(`conveyor.policy.classify`, kind ``quota``): OpenAI's ``insufficient_quota``, Anthropic's
spend cap and credit balance, Google's and AWS's quota codes, and rules of yours.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import QuotaExhausted
from ..policy.classify import DEFAULT_CLASSIFIER
from ..policy.llm_errors import api_error_fields

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..policy.classify import Classifier
    from .protocol import Limit

__all__ = ["quota_halt"]


def quota_halt(
    exc: BaseException, limiters: Sequence[Limit], *, classifier: Classifier | None = None
) -> QuotaExhausted | None:
    """The `QuotaExhausted` that `exc` means, or None if it does not say the quota is used up.

    The one a limiter of `limiters` halted with when there is one (it read the same error),
    else one naming the first limiter and what the API said.
    """
    if isinstance(exc, QuotaExhausted):
        return exc
    if (classifier or DEFAULT_CLASSIFIER).classify(exc).kind != "quota":
        return None
    for limiter in limiters:
        halted: QuotaExhausted | None = getattr(limiter, "halted", None)
        if halted is not None:
            return halted
    name = limiters[0].name if limiters else "the API"
    return QuotaExhausted(name, api_error_fields(exc)[2] or "")
