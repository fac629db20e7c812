"""LLM batches: token estimates, answer checks, cache, prices, budgets, wrapped SDK clients.

>>> client = conveyor.llm.limit_openai(openai.AsyncOpenAI(), limiters=[llm])  # doctest: +SKIP
>>> answer = await client.chat.completions.create(
...     model="gpt-4o-mini", messages=[...])  # doctest: +SKIP
>>> claude = conveyor.llm.limit_anthropic(
...     anthropic.AsyncAnthropic(), limiters=[haiku])  # doctest: +SKIP
>>> answer = await claude.messages.create(
...     model="claude-haiku-4-5", max_tokens=256, messages=[...])  # doctest: +SKIP

Neither SDK is imported by Conveyor: you bring the client (``pip install 'conveyor[llm]'`` for
``openai``, ``'conveyor[anthropic]'`` for ``anthropic``).
"""

from .cache import CACHE_HEADER as CACHE_HEADER
from .cache import AnswerCache as AnswerCache
from .cache import RedisCache as RedisCache
from .cache import ResponseCache as ResponseCache
from .cache import cache_key as cache_key
from .cache import open_cache as open_cache
from .claude import limit_anthropic as limit_anthropic
from .hooks import AnswerHooks as AnswerHooks
from .hooks import LlmOptions as LlmOptions
from .pricing import Price as Price
from .pricing import PriceTable as PriceTable
from .pricing import Usage as Usage
from .pricing import usage_of as usage_of
from .tokens import estimate_tokens as estimate_tokens
from .tokens import request_cost as request_cost
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
    "estimate_tokens",
    "limit_anthropic",
    "limit_openai",
    "open_cache",
    "request_cost",
    "usage_of",
]
