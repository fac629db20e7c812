"""Keep secrets out of everything written: replace their values by ``[redacted]``. Pure.

The batch runner never writes request headers anywhere; this is the second line of defence,
for an API that echoes a credential back in an answer or an error. Values shorter than
`MIN_SECRET` characters are not redacted (they would mangle ordinary text, and are too short to
be credentials); `Redactor.too_short` lists them so the command line can warn.

`Redactor.value` does the same inside a JSON value (an answer's headers and body), string by
string, so that what it returns is the same structure: the job's result and the response
cache store exactly that.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["CREDENTIAL_HEADERS", "MIN_SECRET", "REDACTED", "Redactor", "without_credentials"]

#: The shortest value redacted.
MIN_SECRET = 8
REDACTED = "[redacted]"

#: Header names that carry credentials: a job's item may not set them, and no stored answer
#: (result or response cache) keeps one, whatever its value.
CREDENTIAL_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "api-key",
        "x-goog-api-key",
        "anthropic-api-key",
    }
)


def without_credentials(
    headers: dict[str, str], also: frozenset[str] = frozenset()
) -> dict[str, str]:
    """`headers` less every `CREDENTIAL_HEADERS` name and every name in `also` (lower-case).

    >>> without_credentials({"Authorization": "Bearer x", "content-type": "a/b"})
    {'content-type': 'a/b'}
    """
    return {
        k: v
        for k, v in headers.items()
        if k.lower() not in CREDENTIAL_HEADERS and k.lower() not in also
    }


class Redactor:
    """Replaces every occurrence of the secrets (and of their JSON-escaped forms).

    A value like ``Bearer sk-...`` is also redacted without its scheme, in case an answer
    quotes the token alone.

    >>> Redactor(["Bearer sk-12345678"])('{"echo":"sk-12345678"}')
    '{"echo":"[redacted]"}'
    """

    __slots__ = ("_needles", "too_short")

    def __init__(self, secrets: tuple[str, ...] | list[str]) -> None:
        needles: set[str] = set()
        self.too_short = 0
        for secret in secrets:
            forms = {secret}
            scheme, _, token = secret.rpartition(" ")
            if scheme:
                forms.add(token)
            kept = {f for f in forms if len(f) >= MIN_SECRET}
            if secret not in kept:
                self.too_short += 1
            for form in kept:
                needles.add(form)
                needles.add(json.dumps(form, ensure_ascii=False)[1:-1])
        # Longest first, so that a secret containing another is replaced whole.
        self._needles = tuple(sorted(needles, key=len, reverse=True))

    def __bool__(self) -> bool:
        return bool(self._needles)

    def __call__(self, text: str) -> str:
        """Return `text` with every secret replaced."""
        for needle in self._needles:
            if needle in text:
                text = text.replace(needle, REDACTED)
        return text

    def value(self, value: Any) -> Any:
        """`value` (parsed JSON) with every secret replaced in every string, keys included.

        >>> Redactor(["Bearer sk-12345678"]).value({"echo": ["x", "Bearer sk-12345678"]})
        {'echo': ['x', '[redacted]']}
        """
        if not self._needles:
            return value
        if isinstance(value, str):
            return self(value)
        if isinstance(value, dict):
            return {self(str(k)): self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        return value
