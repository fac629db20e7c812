"""The reasons an LLM API gives for how an answer ended, in the order the APIs document them.

Kept apart from `conveyor.llm.validate` (which makes them the sets `AnswerCheck` knows) so
that the command line can offer them as choices without importing the LLM layer.
"""

from __future__ import annotations

__all__ = ["FINISH_REASONS", "STOP_REASONS"]

#: The ``finish_reason`` of an OpenAI-compatible chat completion.
FINISH_REASONS = ("stop", "length", "content_filter", "tool_calls", "function_call")
#: The ``stop_reason`` of Claude's Messages API.
STOP_REASONS = (
    "end_turn",
    "max_tokens",
    "stop_sequence",
    "tool_use",
    "pause_turn",
    "refusal",
    "model_context_window_exceeded",
)
