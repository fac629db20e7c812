"""Checking an LLM's answer before it counts as a success. Pure.

An answer can be a 200 and still useless: cut off at ``max_tokens`` (``finish_reason:
"length"``), filtered (``"content_filter"``), or not the JSON the prompt asked for. An
`AnswerCheck` turns each of these into an `InvalidAnswer` naming the reason, which the retry
policy retries (through the limiter, like any other attempt).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .._json import BadJSON, loads
from ..errors import ConfigError, InvalidAnswer

__all__ = ["FINISH_REASONS", "AnswerCheck", "answer_choices"]

#: The finish reasons OpenAI-compatible APIs give (chat completions).
FINISH_REASONS = frozenset({"stop", "length", "content_filter", "tool_calls", "function_call"})


def answer_choices(body: Any) -> list[dict[str, Any]]:
    """The ``choices`` of a chat completion (a dict, or an SDK object with ``model_dump``)."""
    if hasattr(body, "model_dump"):
        body = body.model_dump()
    choices = body.get("choices") if isinstance(body, dict) else None
    return [c for c in choices if isinstance(c, dict)] if isinstance(choices, list) else []


@dataclass(frozen=True, kw_only=True, slots=True)
class AnswerCheck:
    """What a chat completion must be to succeed; call it with the answer's body.

    Args:
        finish_reasons: the finish reasons accepted (``{"stop"}``); None: any.
        json: every choice's content must parse as JSON.

    >>> check = AnswerCheck(finish_reasons=frozenset({"stop"}))
    >>> check({"choices": [{"finish_reason": "length", "message": {"content": "Once"}}]})
    Traceback (most recent call last):
    ...
    conveyor.errors.InvalidAnswer: the answer was cut off (finish_reason "length"): ...
    """

    finish_reasons: frozenset[str] | None = None
    json: bool = False

    def __post_init__(self) -> None:
        reasons = self.finish_reasons
        if reasons is not None and (
            not isinstance(reasons, frozenset) or not reasons or not reasons <= FINISH_REASONS
        ):
            msg = (
                f"AnswerCheck(finish_reasons={reasons!r}): pass a non-empty frozenset of"
                f" {', '.join(sorted(FINISH_REASONS))}, e.g. frozenset({{'stop'}})"
            )
            raise ConfigError(msg)

    def __call__(self, body: Any) -> None:
        """Raise `InvalidAnswer` if the answer fails the check; return None if it passes."""
        choices = answer_choices(body)
        if not choices and (self.finish_reasons is not None or self.json):
            raise InvalidAnswer("no_choices", "the answer has no choices to check", answer=body)
        for choice in choices:
            self._check_choice(choice, body)

    def _check_choice(self, choice: dict[str, Any], body: Any) -> None:
        reason = choice.get("finish_reason")
        if self.finish_reasons is not None and reason not in self.finish_reasons:
            wanted = ", ".join(sorted(self.finish_reasons))
            if reason == "length":
                why = "the answer was cut off"
                fix = "raise max_tokens or shorten the prompt"
            elif reason == "content_filter":
                why = "the answer was filtered"
                fix = "rephrase the prompt"
            else:
                why = "the answer ended unexpectedly"
                fix = "check the request"
            code = reason if reason in {"length", "content_filter"} else "finish_reason"
            msg = f'{why} (finish_reason "{reason}"): expected {wanted}; {fix}'
            raise InvalidAnswer(str(code), msg, answer=body)
        if self.json:
            message = choice.get("message")
            content = message.get("content") if isinstance(message, dict) else None
            try:
                loads(content) if isinstance(content, str) else None
            except BadJSON as exc:  # not JSON, NaN, nested too deep, ...
                msg = f"the answer's content {exc.problem}"
                raise InvalidAnswer("not_json", msg, answer=body) from None
            if not isinstance(content, str):
                raise InvalidAnswer("not_json", "the answer has no text content", answer=body)
