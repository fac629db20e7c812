"""`limit_anthropic`: an ``anthropic`` client whose Messages calls go through shared limiters.

``anthropic.AsyncAnthropic`` and the sync ``anthropic.Anthropic`` both. User code keeps calling
``client.messages.create(...)``; every call then (the engine is `conveyor.llm.limited`'s,
shared with `limit_openai`):

1. works out its cost before it is sent: ``input_tokens`` estimated from the top-level
   ``system`` prompt, the messages and the ``tools`` (characters / 4, no tokenizer), and
   ``output_tokens`` bounded by ``max_tokens``: Anthropic's separate input and output limits
   (``Limiter(input_tokens_per_minute=..., output_tokens_per_minute=..., bucket_s=1)``);
2. takes a slot of each limiter, in order;
3. is sent once by the SDK, whose own retries are turned off (``max_retries=0``);
4. settles each slot with the answer's real ``usage``: input plus cache creation as input,
   cache reads toward neither (as Anthropic counts them), output as produced; and shows the
   limiters the answer's ``anthropic-ratelimit-*`` headers (a limit stated below yours is
   adopted);
5. failed, shows the limiters its error: a 429 pauses every caller for its ``retry-after``; a
   529 (overloaded) is pushed back and retried with backoff; the spend cap (a 429 naming the
   spend limit, without ``retry-after``) halts the limiter: that call and every later one
   raise `QuotaExhausted` at once, and nothing more is sent;
6. runs the answer check, if any, outside the slots, and is retried by `conveyor.Retry`'s
   policy, each retry taking its slots again.

**Streams are exact.** ``messages.create(..., stream=True)`` and ``messages.stream(...)`` hold
their slots until the stream ends, and settle them from its usage: ``message_start``'s input,
the final ``message_delta``'s output (`conveyor.llm.streams`). Only the opening is retried;
an error inside a stream reaches the reader. The answer check does not run on streams.

Everything else on the client is the client's own, unchanged: ``messages.count_tokens``,
``messages.batches`` (the Message Batches API, which has its own limits), ``models``, ...
A sync client's calls are admitted on the bridge's loop (`conveyor.llm.bridge`): its limiters
must not be used at the same time by async code on another loop.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .provider import C, Provider, limit_client
from .wrap import call_cost

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from ..limits.limiter import Limiter
    from ..policy.retry import Retry

__all__ = ["ANTHROPIC", "fold_usage", "limit_anthropic", "messages_cost"]


def limit_anthropic(
    client: C,
    *,
    limiters: Sequence[Limiter],
    retry: Retry | None = None,
    validate: Callable[[Any], object] | None = None,
) -> C:
    """Return `client` (``anthropic.AsyncAnthropic`` or ``Anthropic``) limited by `limiters`.

    Args:
        client: the client to wrap; it is not changed (a copy with ``max_retries=0`` is used).
        limiters: the shared `Limiter`s every call goes through, in order: one per model class,
            with that class's limits.
        retry: how failed calls are retried (default: ``Retry(attempts=5)``: 429s after their
            ``retry-after``, 529s and 5xx with backoff; never a spend cap).
        validate: called with each answer (not a stream's); raising `InvalidAnswer` makes the
            call fail and retry.

    >>> claude = conveyor.Limiter("claude-haiku", requests_per_minute=50,
    ...     input_tokens_per_minute=50_000, output_tokens_per_minute=10_000, bucket_s=1.2)
    >>> client = limit_anthropic(anthropic.AsyncAnthropic(), limiters=[claude])  # doctest: +SKIP
    """
    return limit_client(
        ANTHROPIC, client, limiters=limiters, retry=retry, validate=validate, refund=True
    )


def messages_cost(kwargs: dict[str, Any]) -> dict[str, float]:
    """A Messages call's cost per dimension, before it is sent (`conveyor.limits.costs`).

    ``input_tokens``: the characters of the ``system`` prompt, the messages' text and the
    ``tools`` (as JSON) / 4; ``output_tokens``: ``max_tokens``; ``tokens``: both. The answer's
    usage settles it.

    >>> messages_cost({"system": "Be brief.", "max_tokens": 64,
    ...     "messages": [{"role": "user", "content": "Say hello, twice."}]})
    {'tokens': 71.0, 'input_tokens': 7.0, 'output_tokens': 64.0}
    """
    return call_cost(kwargs)


_USAGE_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
)


def _field(value: Any, name: str) -> Any:
    return value.get(name) if isinstance(value, Mapping) else getattr(value, name, None)


def fold_usage(usage: dict[str, int], event: Any) -> None:
    """Fold one Messages stream event's usage into `usage`, in the API's names.

    ``message_start`` carries the message's usage as it starts (its input, the cache's);
    each ``message_delta`` cumulative totals, which replace what was there (never add).

    >>> usage = {}
    >>> fold_usage(usage, {"type": "message_start",
    ...     "message": {"usage": {"input_tokens": 25, "output_tokens": 1}}})
    >>> fold_usage(usage, {"type": "message_delta", "usage": {"output_tokens": 15}})
    >>> usage
    {'input_tokens': 25, 'output_tokens': 15}
    """
    kind = _field(event, "type")
    if kind == "message_start":
        reported = _field(_field(event, "message"), "usage")
    elif kind == "message_delta":
        reported = _field(event, "usage")
    else:
        return
    for name in _USAGE_FIELDS:
        value = _field(reported, name)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            usage[name] = value


#: Anthropic's Messages API.
ANTHROPIC = Provider(
    wrapper="limit_anthropic",
    clients="an anthropic.AsyncAnthropic or anthropic.Anthropic",
    path=("messages",),
    cost=messages_cost,
    fold=fold_usage,
    stream_helper=True,
)
