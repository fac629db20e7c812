"""`Provider`: what one LLM SDK's limited calls need to know of it, and `limit_client`.

`limit_openai` and `limit_anthropic` differ only in a `Provider`: which resource's ``create``
is wrapped (``chat.completions``, ``messages``), how a call's cost is estimated before it is
sent, how a stream's events report usage (if streams are metered) and whether the resource's
``stream(...)`` helper is wrapped too. Checking the arguments, turning the SDK's retries off,
and building the wrapped client from proxies is `limit_client`'s, once for both.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

from ..engine.sendtime import date_httpx_sends
from ..errors import ConfigError
from ..limits.limiter import Limiter
from ..policy.retry import Retry, check_callable, check_retry
from .limited import Calls, Settings, SyncCalls

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from .streams import Fold

__all__ = ["Provider", "limit_client"]

#: The client a wrapper is given and returns, limited.
C = TypeVar("C")


@dataclass(frozen=True, slots=True, kw_only=True)
class Provider:
    """What differs between two SDKs' limited calls; the rest is `conveyor.llm.limited`'s.

    Args:
        wrapper: the function's name, in errors (``"limit_openai"``).
        clients: what to pass it, in errors (``"an openai.AsyncOpenAI or openai.OpenAI"``).
        path: the attributes leading from the client to the resource whose ``create`` is
            wrapped (``("chat", "completions")``).
        cost: a call's cost per dimension, from its keyword arguments, before it is sent.
        fold: folds one stream event's usage into the usage so far; with it, a
            ``stream=True`` call holds its slots until its stream ends and is settled from
            it. None: a stream's slots are released when its headers come, unsettled.
        stream_helper: the resource's ``stream(...)`` helper is wrapped too.
    """

    wrapper: str
    clients: str
    path: tuple[str, ...]
    cost: Callable[[dict[str, Any]], dict[str, float]]
    fold: Fold | None = None
    stream_helper: bool = False


def limit_client(
    provider: Provider,
    client: C,
    *,
    limiters: Sequence[Limiter],
    retry: Retry | None,
    validate: Callable[[Any], object] | None,
    refund: bool,
) -> C:
    """Return `client` with `provider`'s resource's calls through `limiters` (see the callers).

    The client is not changed: a copy with ``max_retries=0`` sends the limited calls, and
    everything else on the returned client is the client's own, except ``with_options`` and
    ``copy``, whose clients are limited the same way.
    """
    name = provider.wrapper
    if isinstance(limiters, Limiter) or not all(isinstance(x, Limiter) for x in limiters):
        msg = f"{name}(limiters=...): pass a list of conveyor.Limiter, e.g. limiters=[llm]"
        raise ConfigError(msg)
    check_retry(retry, name)
    check_callable(validate, "validate", "is called with each answer", name)
    with_options = getattr(client, "with_options", None)
    resources = _resources(client, provider.path)
    create = getattr(resources[-1], "create", None) if resources else None
    if with_options is None or not callable(create):
        msg = f"{name}({type(client).__name__}): pass {provider.clients} client"
        raise ConfigError(msg)
    # The SDK wraps `create` in a plain decorator: look at the function beneath it.
    is_async = inspect.iscoroutinefunction(inspect.unwrap(create))
    quiet = with_options(max_retries=0)
    if is_async:
        date_httpx_sends(getattr(quiet, "_client", None))
    kind = Calls if is_async else SyncCalls
    settings = Settings(provider, tuple(limiters), retry or Retry(attempts=5), validate, refund)
    calls = kind(_resources(quiet, provider.path)[-1], settings)
    replaced: dict[str, object] = {"create": calls.create}
    if provider.stream_helper:
        replaced["stream"] = calls.stream
    limited: object = _Proxy(resources[-1], **replaced)
    for parent, attribute in zip(
        reversed(resources[:-1]), reversed(provider.path[1:]), strict=True
    ):
        limited = _Proxy(parent, **{attribute: limited})

    def rewrapped(**options: Any) -> Any:
        """The client's ``with_options(...)`` / ``copy(...)``, limited the same way."""
        return limit_client(
            provider,
            with_options(**options),
            limiters=limiters,
            retry=retry,
            validate=validate,
            refund=refund,
        )

    top = {provider.path[0]: limited, "with_options": rewrapped, "copy": rewrapped}
    return cast("C", _Proxy(client, **top))


def _resources(client: object, path: tuple[str, ...]) -> list[Any]:
    """The objects along `path` from `client` (``[chat, chat.completions]``); [] if one lacks."""
    found: list[Any] = []
    current: object = client
    for attribute in path:
        current = getattr(current, attribute, None)
        if current is None:
            return []
        found.append(current)
    return found


class _Proxy:
    """An object whose named attributes are replaced, everything else its target's."""

    def __init__(self, target: object, **replaced: object) -> None:
        self._target = target
        self.__dict__.update(replaced)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)
