r"""Keep secrets out of everything written: replace their values by ``[redacted]``. Pure.

The batch runner never writes request headers anywhere; this is the second line of defence,
for an API that echoes a credential back in an answer or an error. Values shorter than
`MIN_SECRET` characters are not redacted (they would mangle ordinary text, and are too short to
be credentials); `Redactor.too_short` lists them so the command line can warn.

`Redactor.value` does the same inside a JSON value (an answer's headers and body), string by
string, so that what it returns is the same structure: the job's result and the response
cache store exactly that.

An echo is not always the value as it was sent: an error page quotes the URL-encoded query,
a text body holds JSON with ``\u`` escapes, a debug field holds the ``Authorization`` header in
base64. So each secret is also looked for spelled those ways: every character as itself, a
percent escape or a JSON escape, in any mix (one pattern, tried only on text holding a ``%``
or a backslash), and in standard and URL-safe base64 at each of the three offsets a value can
start at inside an encoded text (only the characters the secret alone decides are matched).
What is left is a secret hashed, truncated, re-cased or split; see docs/explanations/security.md.
"""

from __future__ import annotations

import base64
import json
import re
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

    __slots__ = ("_needles", "_spelled", "too_short")

    def __init__(self, secrets: tuple[str, ...] | list[str]) -> None:
        needles: set[str] = set()
        plain: set[str] = set()
        self.too_short = 0
        for secret in secrets:
            forms = {secret}
            scheme, _, token = secret.rpartition(" ")
            if scheme:
                forms.add(token)
            if scheme.lower() == "basic":
                forms.update(_basic(token))
            kept = {f for f in forms if len(f) >= MIN_SECRET}
            if secret not in kept:
                self.too_short += 1
            plain |= kept
            for form in kept:
                needles.add(form)
                needles.add(json.dumps(form, ensure_ascii=False)[1:-1])
                needles.update(_base64_cores(form))
        # Longest first, so that a secret containing another is replaced whole.
        self._needles = tuple(sorted(needles, key=len, reverse=True))
        # The same order for the pattern: an alternation takes the first that matches.
        spelled = [_spelled(form) for form in sorted(plain, key=len, reverse=True)]
        self._spelled = re.compile("|".join(spelled)) if spelled else None

    def __bool__(self) -> bool:
        return bool(self._needles)

    def __call__(self, text: str) -> str:
        """Return `text` with every secret replaced."""
        for needle in self._needles:
            if needle in text:
                text = text.replace(needle, REDACTED)
        if self._spelled is not None and ("%" in text or "\\" in text):
            text = self._spelled.sub(REDACTED, text)
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


def _basic(token: str) -> set[str]:
    """What a ``Basic`` token encodes: ``user:password``, and the password alone.

    >>> sorted(_basic("dXNlcjpwYXNzd29yZC0x"))
    ['password-1', 'user:password-1']
    """
    try:
        pair = base64.b64decode(token, validate=True).decode()
    except ValueError:  # not base64, or not UTF-8: nothing more to look for
        return set()
    return {pair, pair.partition(":")[2]} - {""}


def _hex(byte: int) -> str:
    """A pattern for the two hex digits of `byte`, in either case."""
    return "".join(f"[{d}{d.upper()}]" if d.isalpha() else d for d in f"{byte:02x}")


def _spelled(form: str) -> str:
    r"""A pattern for `form` with each character as itself, a percent or a JSON escape.

    >>> re.fullmatch(_spelled("a/b c"), "%61\\/b+c") is not None
    True
    """
    parts = []
    for char in form:
        ways = [re.escape(char), "".join(f"%{_hex(b)}" for b in char.encode())]
        units = char.encode("utf-16-be")
        ways.append(
            "".join(f"\\\\u{_hex(units[i])}{_hex(units[i + 1])}" for i in range(0, len(units), 2))
        )
        if char in '"\\/':
            ways.append(re.escape("\\" + char))
        if char == " ":
            ways.append(r"\+")
        parts.append(f"(?:{'|'.join(ways)})")
    return "".join(parts)


def _base64_cores(form: str) -> set[str]:
    """What `form` reads as inside base64 text, whatever comes before or after it.

    Encoded after 0, 1 or 2 other bytes, the secret's own characters are those after the
    ones the bytes before it share, up to the last whole group of three bytes.

    >>> sorted(_base64_cores("sk-12345678"))
    ['NrLTEyMzQ1Njc4', 'c2stMTIzNDU2', 'zay0xMjM0NTY3']
    """
    cores: set[str] = set()
    data = form.encode()
    for offset, skip in ((0, 0), (1, 2), (2, 3)):
        whole = (offset + len(data)) // 3 * 4
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            core = encode(b"\0" * offset + data).decode()[skip:whole]
            if len(core) >= MIN_SECRET:
                cores.add(core)
    return cores
