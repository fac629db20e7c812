"""Checking an LLM's answer before it counts as a success, for OpenAI's and Claude's shapes. Pure.

An answer can be a 200 and still useless: cut off at ``max_tokens``, filtered or refused, or
not the JSON the prompt asked for. An `AnswerCheck` turns each of these into an
`InvalidAnswer` naming the reason, which the retry policy retries (through the limiter, like
any other attempt).

The two APIs say it differently, and a check reads each in its own terms:

- OpenAI's chat completion: every choice's ``finish_reason`` (`FINISH_REASONS`) and its
  ``message.content``;
- Claude's message (``"type": "message"``): its ``stop_reason`` (`STOP_REASONS`) and the text
  of its ``text`` content blocks, joined.

A check names reasons of either API (``{"stop", "end_turn"}`` serves a file of both). One that
names none of an API's reasons can never pass on that API's answers: `AnswerCheck.problem`
says so before anything is sent, and an answer that meets it anyway fails at once, not retried
(``check_mismatch``), instead of being paid for again and again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import _reasons
from .._json import BadJSON, loads
from ..errors import ConfigError, InvalidAnswer

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "FINISH_REASONS",
    "REASONS",
    "STOP_REASONS",
    "AnswerCheck",
    "answer_choices",
    "answer_text",
    "is_claude_answer",
]

#: The finish reasons OpenAI-compatible APIs give (chat completions).
FINISH_REASONS = frozenset(_reasons.FINISH_REASONS)
#: The stop reasons Claude's Messages API gives.
STOP_REASONS = frozenset(_reasons.STOP_REASONS)
#: Every reason a check may require.
REASONS = FINISH_REASONS | STOP_REASONS
# Each API's name for a cut-off answer and for one that was filtered or refused: the reason
# code the failure gets, why, and the fix.
_FAILURES = {
    "length": ("length", "the answer was cut off", "raise max_tokens or shorten the prompt"),
    "max_tokens": ("length", "the answer was cut off", "raise max_tokens or shorten the prompt"),
    "model_context_window_exceeded": (
        "length",
        "the answer filled the model's context window",
        "shorten the prompt",
    ),
    "content_filter": ("content_filter", "the answer was filtered", "rephrase the prompt"),
    "refusal": ("refusal", "Claude declined to answer", "rephrase the prompt"),
}
_API_TERMS = {
    # API: (its reasons, the field naming them, whose answers)
    "chat": (FINISH_REASONS, "finish_reason", "OpenAI-compatible chat completions"),
    "messages": (STOP_REASONS, "stop_reason", "Claude's Messages answers"),
}


def _plain(body: Any) -> Any:
    """A body as a plain value (an SDK's answer object has ``model_dump``)."""
    return body.model_dump() if hasattr(body, "model_dump") else body


def answer_choices(body: Any) -> list[dict[str, Any]]:
    """The ``choices`` of a chat completion (a dict, or an SDK object with ``model_dump``)."""
    body = _plain(body)
    choices = body.get("choices") if isinstance(body, dict) else None
    return [c for c in choices if isinstance(c, dict)] if isinstance(choices, list) else []


def is_claude_answer(body: Any) -> bool:
    """Whether `body` is a Claude message (a dict, or the ``anthropic`` SDK's ``Message``).

    >>> is_claude_answer({"type": "message", "content": [], "stop_reason": "end_turn"})
    True
    >>> is_claude_answer({"choices": []})
    False
    """
    body = _plain(body)
    return (
        isinstance(body, dict)
        and isinstance(body.get("content"), list)
        and (body.get("type") == "message" or "stop_reason" in body)
    )


def answer_text(body: Any) -> str | None:
    """The text of a Claude message: its text blocks joined; None if it has none.

    >>> blocks = [{"type": "text", "text": '{"a": '}, {"type": "text", "text": "1}"}]
    >>> answer_text({"content": blocks})
    '{"a": 1}'
    """
    body = _plain(body)
    content = body.get("content") if isinstance(body, dict) else None
    if not isinstance(content, list):
        return None
    texts = [
        block["text"]
        for block in content
        if isinstance(block, dict)
        and block.get("type") == "text"
        and isinstance(block.get("text"), str)
    ]
    return "".join(texts) if texts else None


@dataclass(frozen=True, kw_only=True, slots=True)
class AnswerCheck:
    """What an answer must be to succeed; call it with the answer's body.

    Args:
        finish_reasons: the reasons accepted, of either API (``{"stop"}``, ``{"end_turn"}``);
            None: any.
        json: every choice's content (OpenAI), or the message's text (Claude), must parse as
            JSON.

    >>> check = AnswerCheck(finish_reasons=frozenset({"stop", "end_turn"}))
    >>> check({"choices": [{"finish_reason": "length", "message": {"content": "Once"}}]})
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    conveyor.errors.InvalidAnswer: the answer was cut off (finish_reason "length"): ...
    >>> check({"type": "message", "content": [], "stop_reason": "max_tokens"})
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    conveyor.errors.InvalidAnswer: the answer was cut off (stop_reason "max_tokens"): ...
    """

    finish_reasons: frozenset[str] | None = None
    json: bool = False

    def __post_init__(self) -> None:
        reasons = self.finish_reasons
        if reasons is not None and (
            not isinstance(reasons, frozenset) or not reasons or not reasons <= REASONS
        ):
            msg = (
                f"AnswerCheck(finish_reasons={reasons!r}): pass a non-empty frozenset of OpenAI's"
                f" finish reasons ({', '.join(sorted(FINISH_REASONS))}) or Claude's stop"
                f" reasons ({', '.join(sorted(STOP_REASONS))}), e.g. frozenset({{'stop'}}) or"
                " frozenset({'end_turn'})"
            )
            raise ConfigError(msg)

    def problem(self, apis: Iterable[str]) -> str | None:
        """Why this check can never pass on the answers of one of `apis`, or None.

        `apis` are the APIs a run calls (`conveyor.http.apis.api_of`: ``"chat"``,
        ``"messages"``; others are not checked here).

        >>> AnswerCheck(finish_reasons=frozenset({"stop"})).problem(["messages"])[:44]
        'it requires finish_reason stop, which Claude'
        """
        for api in sorted(set(apis)):
            mismatch = self._mismatch(api)
            if mismatch is not None:
                return mismatch
        return None

    def _mismatch(self, api: str) -> str | None:
        reasons = self.finish_reasons
        if reasons is None or api not in _API_TERMS:
            return None
        theirs, field, whose = _API_TERMS[api]
        if reasons & theirs:
            return None
        wanted = ", ".join(sorted(reasons))
        example = "end_turn" if api == "messages" else "stop"
        return (
            f"it requires finish_reason {wanted}, which {whose} never give: they end with a"
            f" {field} ({', '.join(sorted(theirs))}); require one of those too, e.g."
            f" {example}"
        )

    def __call__(self, body: Any) -> None:
        """Raise `InvalidAnswer` if the answer fails the check; return None if it passes."""
        body = _plain(body)
        if is_claude_answer(body):
            self._check_message(body)
            return
        choices = answer_choices(body)
        if not choices and (self.finish_reasons is not None or self.json):
            msg = "the answer has neither choices (OpenAI) nor content blocks (Claude) to check"
            raise InvalidAnswer("no_choices", msg, answer=body)
        if choices:
            self._refuse_a_mismatch("chat", body)
        for choice in choices:
            self._check_reason(choice.get("finish_reason"), "finish_reason", body)
            if self.json:
                message = choice.get("message")
                content = message.get("content") if isinstance(message, dict) else None
                _check_json(content, "content", "the answer has no text content", body)

    def _check_message(self, body: dict[str, Any]) -> None:
        self._refuse_a_mismatch("messages", body)
        self._check_reason(body.get("stop_reason"), "stop_reason", body)
        if self.json:
            _check_json(answer_text(body), "text", "the answer has no text blocks", body)

    def _refuse_a_mismatch(self, api: str, body: Any) -> None:
        mismatch = self._mismatch(api)
        if mismatch is not None:
            msg = f"the answer check can never pass: {mismatch}"
            raise InvalidAnswer("check_mismatch", msg, answer=body, retryable=False)

    def _check_reason(self, reason: object, field: str, body: Any) -> None:
        reasons = self.finish_reasons
        if reasons is None or reason in reasons:
            return
        theirs = _API_TERMS["messages" if field == "stop_reason" else "chat"][0]
        wanted = ", ".join(sorted(reasons & theirs))
        code, why, fix = _FAILURES.get(
            str(reason), ("finish_reason", "the answer ended unexpectedly", "check the request")
        )
        msg = f'{why} ({field} "{reason}"): expected {wanted}; {fix}'
        raise InvalidAnswer(code, msg, answer=body)


def _check_json(content: object, what: str, missing: str, body: Any) -> None:
    if not isinstance(content, str):
        raise InvalidAnswer("not_json", missing, answer=body)
    try:
        loads(content)
    except BadJSON as exc:  # not JSON, NaN, nested too deep, ...
        msg = f"the answer's {what} {exc.problem}"
        raise InvalidAnswer("not_json", msg, answer=body) from None
