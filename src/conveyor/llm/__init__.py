"""LLM batches: token estimates, answer checks, the response cache, prices, the openai wrapper.

>>> client = conveyor.llm.limit_openai(openai.AsyncOpenAI(), limiters=[llm])  # doctest: +SKIP
>>> answer = await client.chat.completions.create(
...     model="gpt-4o-mini", messages=[...])  # doctest: +SKIP

The ``openai`` package is imported only by `limit_openai` (``pip install 'conveyor[llm]'``).
`limit_openai` itself is imported when first used: it sends through `conveyor.http`, whose
request format counts tokens with `conveyor.llm.tokens`, and the two packages must not import
each other while they load.
"""

from typing import TYPE_CHECKING, Any

from .cache import CACHE_HEADER as CACHE_HEADER
from .cache import AnswerCache as AnswerCache
from .cache import RedisCache as RedisCache
from .cache import ResponseCache as ResponseCache
from .cache import cache_key as cache_key
from .cache import open_cache as open_cache
from .hooks import AnswerHooks as AnswerHooks
from .hooks import LlmOptions as LlmOptions
from .pricing import Price as Price
from .pricing import PriceTable as PriceTable
from .pricing import Usage as Usage
from .pricing import usage_of as usage_of
from .tokens import estimate_tokens as estimate_tokens
from .tokens import request_cost as request_cost
from .validate import AnswerCheck as AnswerCheck

if TYPE_CHECKING:
    from .wrap import limit_openai as limit_openai

__all__ = [
    "CACHE_HEADER",
    "AnswerCache",
    "AnswerCheck",
    "AnswerHooks",
    "LlmOptions",
    "Price",
    "PriceTable",
    "RedisCache",
    "ResponseCache",
    "Usage",
    "cache_key",
    "estimate_tokens",
    "limit_openai",
    "open_cache",
    "request_cost",
    "usage_of",
]


def __getattr__(name: str) -> Any:
    """`limit_openai`, imported on first use (see the module docstring)."""
    if name == "limit_openai":
        from .wrap import limit_openai  # noqa: PLC0415 - lazily, to keep the packages apart

        return limit_openai
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
