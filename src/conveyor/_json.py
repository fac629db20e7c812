r"""The one reader of JSON that comes from outside: every way a decode fails becomes `BadJSON`.

Every JSON text Conveyor did not write itself (a line of a requests file, an uploaded file,
a request body, an answer from an API, an item given on the command line) is read by `loads`,
so that a hostile or broken text is one clear error, never a crash:

- not UTF-8, not JSON, cut short, trailing characters: msgspec's error, said in plain words;
- ``NaN``, ``Infinity``, or a number too large for a float (``1e999``): not JSON numbers;
- a lone surrogate escape (``"\ud800"``): not Unicode, so it could not be stored or written
  as UTF-8 (msgspec calls it "truncated", which misleads);
- arrays and objects nested more than `MAX_DEPTH` deep: a decoder recursing on
  ``[[[[...`` a hundred thousand deep raises `RecursionError`, and a value that decodes
  here near the limit could still break a later, deeper reader (the stores, the encoder),
  so the limit is fixed and checked, not left to the interpreter's stack.

The tree (under Conveyor's one root, `conveyor.errors`)::

    ConveyorError
    └── BadJSON        also a ValueError; `problem` says what is wrong, to follow a subject
                       ("line 3 " + problem, "the body " + problem)
"""

from __future__ import annotations

import re
from itertools import accumulate
from typing import Any

import msgspec

from .errors import ConveyorError

__all__ = ["MAX_DEPTH", "BadJSON", "loads"]

#: How deep arrays and objects may nest in a JSON text read from outside (what common JSON
#: parsers allow by default; real requests and answers nest a few tens deep at most).
MAX_DEPTH = 128

# msgspec reads JSON several times faster than the standard library, keeps integers of any
# size exact, and refuses NaN and numbers out of range (docs/decisions.md).
_decode = msgspec.json.Decoder().decode
# A JSON string, escapes included (the unrolled form: no backtracking on long strings).
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
# Every byte that is not a bracket, to delete from what is left once strings are gone.
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
# +1 for an opening bracket, -1 for a closing one: the running sum is the depth.
_STEP = tuple(1 if b in b"[{" else -1 if b in b"]}" else 0 for b in range(256))
# An escape in a JSON string: \uXXXX, or a backslash and one character.
_ESCAPE = re.compile(rb"\\(u[0-9a-fA-F]{4}|.)", re.DOTALL)
# Words some encoders write for numbers JSON cannot hold.
_NOT_NUMBERS = (b"Infinity", b"NaN")
_BYTE = re.compile(r" \(byte (\d+)\)$")
_SURROGATE_FIX = (
    "write the character itself, or a whole pair (\\ud800-\\udbff then \\udc00-\\udfff),"
    " or remove it"
)


class BadJSON(ConveyorError, ValueError):
    """A JSON text from outside cannot be used; `problem` says why, to follow its subject.

    >>> str(BadJSON("is not valid JSON: it ends too early"))
    'is not valid JSON: it ends too early'
    """

    def __init__(self, problem: str, *, too_deep: bool = False) -> None:
        self.problem = problem
        #: The text is JSON, but nests deeper than the limit (it is no syntax error).
        self.too_deep = too_deep
        super().__init__(problem)


def loads(data: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Return the JSON value in `data`; raise `BadJSON` for anything else (see the module).

    >>> loads(b'{"a": [1, 2]}')
    {'a': [1, 2]}
    >>> try:
    ...     loads(b'[1, NaN]')
    ... except BadJSON as exc:
    ...     print(exc.problem)
    is not valid JSON: NaN at column 5 is not a JSON number; write null or a string
    """
    if isinstance(data, str):
        try:
            raw = data.encode()
        except UnicodeEncodeError as bad:  # a lone surrogate character, not an escape
            raise BadJSON(
                f"is not valid Unicode: a lone surrogate \\u{ord(data[bad.start]):04x} at column"
                f" {bad.start + 1} is half of a pair; {_SURROGATE_FIX}"
            ) from None
    else:
        raw = data
    try:
        value = _decode(raw)
    except RecursionError:
        raise _too_deep(max_depth) from None
    except msgspec.DecodeError as exc:  # msgspec.ValidationError too: a number out of range
        raise BadJSON(_problem(raw, exc)) from None
    # Counting brackets is cheap and almost always settles it; only a text with more brackets
    # than the limit is scanned for its real depth.
    if raw.count(b"[") + raw.count(b"{") > max_depth and depth(raw) > max_depth:
        raise _too_deep(max_depth)
    return value


def depth(raw: bytes) -> int:
    """How deep arrays and objects nest in the JSON text `raw` (brackets in strings ignored).

    >>> depth(b'[{"a": "[[["}, [[]]]')
    3
    """
    brackets = _STRING.sub(b"", raw).translate(None, delete=_NOT_BRACKETS)
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


def _too_deep(max_depth: int) -> BadJSON:
    return BadJSON(
        f"nests arrays and objects more than {max_depth} deep, the most accepted: flatten it",
        too_deep=True,
    )


def _problem(raw: bytes, exc: msgspec.DecodeError) -> str:
    """What is wrong with `raw`, which msgspec refused with `exc`, as a predicate."""
    try:
        text = raw.decode()
    except UnicodeDecodeError as bad:
        return f"is not UTF-8 text ({bad.reason} at byte {bad.start}): save it as UTF-8"
    surrogate = _lone_surrogate(raw)
    if surrogate is not None:
        escape, at = surrogate
        column = len(raw[:at].decode()) + 1
        return (
            f"is not valid JSON: a lone surrogate \\{escape} at column {column} is not valid"
            f" Unicode; {_SURROGATE_FIX}"
        )
    message = str(exc)
    if isinstance(exc, msgspec.ValidationError):  # the only one JSON decoding raises
        return (
            "is not valid JSON: a number is too large for a float (it reads as infinity);"
            " write it as a string"
        )
    found = _BYTE.search(message)
    if found is not None:
        at = int(found.group(1))
        word = next((w for w in _NOT_NUMBERS if raw.startswith(w, at)), None)
        if word is not None and at > 0 and raw[at - 1 : at] == b"-":
            word, at = b"-" + word, at - 1
        if word is not None:
            column = len(raw[:at].decode()) + 1
            return (
                f"is not valid JSON: {word.decode()} at column {column} is not a JSON number;"
                " write null or a string"
            )
    if not text.strip():
        return "is not valid JSON: it is empty"
    return f"is not valid JSON: {_said(message)}"


def _said(message: str) -> str:
    """Say msgspec's error in lower case, with its position in words.

    >>> _said("JSON is malformed: invalid character (byte 6)")
    'invalid character at byte 6'
    >>> _said("Input data was truncated")
    'it ends too early'
    """
    text = message.removeprefix("JSON is malformed: ")
    if text == "Input data was truncated":
        return "it ends too early"
    text = _BYTE.sub(r" at byte \1", text)
    return text[:1].lower() + text[1:]


def _lone_surrogate(raw: bytes) -> tuple[str, int] | None:
    r"""The first ``\uD800``-``\uDFFF`` escape in `raw` not in a pair, and its byte offset.

    >>> _lone_surrogate(rb'"ok \ud83d\ude00", "x\ud800"')
    ('ud800', 21)
    >>> _lone_surrogate(rb'"\\ud800"') is None
    True
    """
    pending: tuple[str, int] | None = None
    end = -1
    for found in _ESCAPE.finditer(raw):
        escape = found.group(1).decode("ascii", "replace")
        unit = int(escape[1:], 16) if escape[0] == "u" and len(escape) == 5 else -1
        if pending is not None:
            if found.start() == end and 0xDC00 <= unit <= 0xDFFF:
                pending = None
                end = -1
                continue
            return pending
        if 0xD800 <= unit <= 0xDBFF:
            pending, end = (escape, found.start()), found.end()
        elif 0xDC00 <= unit <= 0xDFFF:
            return escape, found.start()
    return pending
