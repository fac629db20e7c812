"""LLM batches: answer checks, the response cache, prices and budgets, the wrapped openai client.

>>> client = conveyor.llm.limit_openai(openai.AsyncOpenAI(), limiters=[llm])  # doctest: +SKIP
>>> answer = await client.chat.completions.create(
...     model="gpt-4o-mini", messages=[...])  # doctest: +SKIP

The ``openai`` package is imported only by `limit_openai` (``pip install 'conveyor[llm]'``).
"""

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
from .validate import AnswerCheck as AnswerCheck
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
    "limit_openai",
    "open_cache",
    "usage_of",
]
