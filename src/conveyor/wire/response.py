"""An answer as it is kept: status, the headers worth keeping, and the body (JSON or text). Pure."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._json import BadJSON, loads
from .redact import without_credentials

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from .redact import Redactor

__all__ = ["KEPT_HEADERS", "Response", "decode_body", "kept_headers"]

#: Headers written to the results (besides every ``x-ratelimit-*`` and Anthropic's
#: ``anthropic-ratelimit-*``); nothing else is kept, so that nothing the API sends about the
#: caller lands on disk by accident. ``request-id`` is Anthropic's name for ``x-request-id``.
KEPT_HEADERS = frozenset(
    {"content-type", "retry-after", "retry-after-ms", "x-request-id", "request-id"}
)
_KEPT_PREFIXES = ("x-ratelimit-", "anthropic-ratelimit-")
# The error text of a non-JSON answer is cut to this many characters in error messages.
_TEXT_IN_MESSAGE = 200


@dataclass(frozen=True, slots=True)
class Response:
    """An HTTP answer: `body` is the parsed JSON, or the text when it is not JSON."""

    status_code: int
    headers: dict[str, str]
    body: Any

    def to_dict(self) -> dict[str, Any]:
        """Return the ``response`` object of a result line."""
        return {"status_code": self.status_code, "headers": self.headers, "body": self.body}

    def redacted(
        self, redact: Redactor | None, *, secret_headers: frozenset[str] = frozenset()
    ) -> Response:
        """The answer as it may be stored (a job's result, the response cache).

        No credential header (`CREDENTIAL_HEADERS`, and `secret_headers`, lower-case names),
        and every secret of `redact` replaced in the other headers and the body.

        >>> from conveyor.wire.redact import Redactor
        >>> answer = Response(200, {"x-request-id": "sk-12345678"}, {"echo": "sk-12345678"})
        >>> answer.redacted(Redactor(["sk-12345678"])).to_dict()["body"]
        {'echo': '[redacted]'}
        """
        headers = without_credentials(self.headers, secret_headers)
        if redact is None:
            return Response(self.status_code, headers, self.body)
        return Response(self.status_code, redact.value(headers), redact.value(self.body))

    def error_text(self, redact: Callable[[str], str] | None = None) -> str:
        """The API's own explanation of a failure: OpenAI's ``error.message``, else the body.

        A long body is cut short; `redact` (the run's `Redactor`) is applied before the cut,
        which would otherwise leave the start of an echoed secret that no redaction matches.

        >>> Response(429, {}, {"error": {"message": "Slow down."}}).error_text()
        'Slow down.'
        >>> Response(502, {}, "<html>Bad gateway</html>").error_text()
        '<html>Bad gateway</html>'
        """
        body = self.body
        if isinstance(body, dict):
            error = body.get("error")
            if isinstance(error, dict) and isinstance(error.get("message"), str):
                text = str(error["message"])
            elif isinstance(error, str):
                text = error
            else:
                text = json.dumps(body, separators=(",", ":"))
        else:
            text = body if isinstance(body, str) else json.dumps(body)
        if redact is not None:
            text = redact(text)
        text = " ".join(text.split())
        if len(text) > _TEXT_IN_MESSAGE:
            text = text[:_TEXT_IN_MESSAGE] + "..."
        return text or "(empty body)"


def kept_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Return the headers a result keeps (`KEPT_HEADERS`, the rate limits'), lower-cased.

    >>> kept_headers([("Content-Type", "application/json"), ("Set-Cookie", "a=b"),
    ...               ("x-ratelimit-remaining-requests", "9")])
    {'content-type': 'application/json', 'x-ratelimit-remaining-requests': '9'}
    """
    kept: dict[str, str] = {}
    for name, value in headers:
        lower = name.lower()
        if lower in KEPT_HEADERS or lower.startswith(_KEPT_PREFIXES):
            kept[lower] = value
    return kept


def decode_body(data: bytes, content_type: str | None) -> Any:
    """Return the body as JSON when it says it is JSON and parses, else as text.

    Raises `conveyor._json.BadJSON` (``too_deep``) for JSON nested deeper than
    `conveyor._json.MAX_DEPTH`: it is JSON, but too deep to keep (the caller decides).

    >>> decode_body(b'{"a": 1}', "application/json")
    {'a': 1}
    >>> decode_body(b"<html>oops</html>", "application/json")
    '<html>oops</html>'
    >>> decode_body(b"42", "text/plain")
    '42'
    """
    if content_type is not None and "json" in content_type.lower():
        try:
            return loads(data)
        except BadJSON as exc:
            if exc.too_deep:
                raise
    return data.decode("utf-8", errors="replace")
