"""The local mock API: a rate-limited fake LLM/SaaS HTTP server for tests, the demo and benchmarks.

It speaks OpenAI's chat-completions shape with a strict sliding-window rate limit and OpenAI's
headers, and Anthropic's Messages shape (``POST /v1/messages``) with per-dimension token
buckets, Anthropic's headers, 529s and a spend cap; it injects seeded faults (500, hang,
dropped connection) and counts everything at ``GET /stats``. Three ways to run it:

- ``async with MockAPI(config) as api:`` in the current event loop (tests);
- ``with run_in_process(config) as base_url:`` in a child process (benchmarks);
- ``serve(config, port=...)`` in the foreground (``conveyor mock-api``).

Only loopback addresses are bound unless told otherwise.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .cli_args import add_arguments as add_arguments
from .cli_args import config_from_args as config_from_args
from .config import DEFAULT_PORT as DEFAULT_PORT
from .config import AnthropicLimits as AnthropicLimits
from .config import Faults as Faults
from .config import MockConfig as MockConfig
from .stats import MockStats as MockStats

if TYPE_CHECKING:
    from .foreground import serve as serve
    from .process import run_in_process as run_in_process
    from .server import MockAPI as MockAPI

__all__ = [
    "DEFAULT_PORT",
    "AnthropicLimits",
    "Faults",
    "MockAPI",
    "MockConfig",
    "MockStats",
    "add_arguments",
    "config_from_args",
    "run_in_process",
    "serve",
]

# The server parts import aiohttp (about a second on a small machine); they load on first use,
# so that `conveyor --help` and a parser built with `add_arguments` stay fast.
_SERVER_PARTS = {"MockAPI": ".server", "run_in_process": ".process", "serve": ".foreground"}


def __getattr__(name: str) -> object:
    """Import a server part on first use."""
    module = _SERVER_PARTS.get(name)
    if module is None:
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
