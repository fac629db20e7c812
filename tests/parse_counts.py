"""Counting every JSON parse and every body encoding Conveyor does, for the one-parse tests."""

import json
import sys
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import msgspec
import pytest

import conveyor._json
from conveyor.http import RawAnswer

#: The name each kind of call is counted under.
PARSE = "parse"
ENCODE = "encode"


def count_parses(
    monkeypatch: pytest.MonkeyPatch, about: Callable[[Any], bool] | None = None
) -> Counter[str]:
    """Count the JSON parses and encodings from now on, by kind.

    `conveyor._json.loads` wherever it is imported, the standard library's ``json.loads``, and
    every msgspec JSON encoder a module of Conveyor holds as ``_encode`` (counted apart, under
    ``"encode <module>"``). With `about`, only the parses of text it accepts are counted
    (a job's store parses its own records too: those are not an item's).
    """
    counts: Counter[str] = Counter()
    original = conveyor._json.loads

    def counted(kind: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            if kind != PARSE or about is None or about(args[0]):
                counts[kind] += 1
            return fn(*args, **kwargs)

        return call

    monkeypatch.setattr(json, "loads", counted(PARSE, json.loads))
    for name, module in list(sys.modules.items()):
        if not name.startswith("conveyor") or module is None:
            continue
        if getattr(module, "loads", None) is original:
            monkeypatch.setattr(module, "loads", counted(PARSE, original))
        encode = getattr(module, "_encode", None)
        if encode is not None and isinstance(
            getattr(encode, "__self__", None), msgspec.json.Encoder
        ):
            monkeypatch.setattr(module, "_encode", counted(f"{ENCODE} {name}", encode))
    return counts


_OK = RawAnswer(
    200,
    {"content-type": "application/json"},
    b'{"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}',
)
_BUSY = RawAnswer(503, {"content-type": "application/json"}, b'{"error": {"message": "busy"}}')


class EveryThirdFailsOnce:
    """Answers 503 to the first attempt of every third request, 200 to everything else."""

    def __init__(self) -> None:
        self.calls = 0
        self.seen: set[bytes] = set()

    async def __call__(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None
    ) -> RawAnswer:
        self.calls += 1
        assert body is not None
        if self.calls % 3 == 0 and body not in self.seen:
            self.seen.add(body)
            return _BUSY
        return _OK
