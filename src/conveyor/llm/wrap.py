"""`limit_openai`: an ``openai`` client whose chat calls go through shared limiters.

``openai.AsyncOpenAI`` and the sync ``openai.OpenAI`` both (Azure's too).

User code keeps calling ``client.chat.completions.create(...)``; every call then:

1. estimates its token cost from the request (`conveyor.llm.tokens.request_cost`: the messages'
   characters / 4 plus ``max_tokens``, with no tokenizer to download);
2. takes a slot of each limiter, in order (a token limiter is charged the estimate);
3. is sent once by the SDK, whose own retries are turned off (``max_retries=0``): they would
   bypass the limiters;
4. settles each slot with the answer's real ``usage`` and shows the limiters the answer's
   rate-limit headers; a 429 or 503 with ``Retry-After`` pauses every caller of the limiter,
   and a 429 ``insufficient_quota`` halts it (`QuotaExhausted`, at once, for every caller);
5. runs the answer check, if any (`AnswerCheck`), outside the slot;
6. is retried by `conveyor.Retry`'s policy (`is_transient`, which honours ``x-should-retry``),
   each retry taking its slots again, so retries are paced like first attempts.

Everything else on the client is the client's own, unchanged. A ``stream=True`` call is
admitted and sent like any other; its slots are released when its headers come, unsettled.
The engine is `conveyor.llm.limited`'s, shared with `limit_anthropic`.

A sync client's calls wait in the calling thread while the limiters, which are asyncio's,
admit them on one private event loop, run by a daemon thread for the process
(`conveyor.llm.bridge`): threads calling one wrapped client (or several, sharing limiters)
are paced together. The limiters a sync client uses must therefore not be used at the same
time by async code on another loop (a limiter belongs to the loop it admits on); share them
among sync clients, or use ``AsyncOpenAI`` everywhere.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .provider import C, Provider, limit_client
from .tokens import request_cost

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from ..limits.limiter import Limiter
    from ..policy.retry import Retry

__all__ = ["OPENAI", "call_cost", "limit_openai"]


def limit_openai(
    client: C,
    *,
    limiters: Sequence[Limiter],
    retry: Retry | None = None,
    validate: Callable[[Any], object] | None = None,
    refund_unused_tokens: bool = False,
) -> C:
    """Return `client` (``openai.AsyncOpenAI`` or ``OpenAI``) with its chats through `limiters`.

    Args:
        client: the client to wrap; it is not changed (a copy with ``max_retries=0`` is used).
        limiters: the shared `Limiter`s every call goes through, in order.
        retry: how failed calls are retried (default: ``Retry(attempts=5)``, transient errors).
        validate: called with each answer; raising `InvalidAnswer` makes the call fail and retry.
        refund_unused_tokens: settle a token limiter with the ``usage`` also when it is below
            the estimate (OpenAI charges ``max_tokens`` up front, so off by default).

    >>> llm = conveyor.Limiter("openai", requests_per_minute=500, tokens_per_minute=200_000)
    >>> client = limit_openai(openai.AsyncOpenAI(), limiters=[llm])  # doctest: +SKIP
    """
    return limit_client(
        OPENAI,
        client,
        limiters=limiters,
        retry=retry,
        validate=validate,
        refund=refund_unused_tokens,
    )


def call_cost(kwargs: dict[str, Any]) -> dict[str, float]:
    """An SDK call's cost per dimension, before it is sent (`conveyor.llm.tokens.request_cost`).

    The SDKs take sequences where a request line has lists (``messages``, ``system``,
    ``tools`` given as tuples): they are counted the same.

    >>> call_cost({"messages": ({"role": "user", "content": "12345678"},), "max_tokens": 5})
    {'tokens': 7.0, 'input_tokens': 2.0, 'output_tokens': 5.0}
    """
    body = {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()}
    return request_cost(body)


#: OpenAI's chat completions.
OPENAI = Provider(
    wrapper="limit_openai",
    clients="an openai.AsyncOpenAI or openai.OpenAI (or an Azure one)",
    path=("chat", "completions"),
    cost=call_cost,
)
