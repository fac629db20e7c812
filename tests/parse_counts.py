"""Counting every JSON parse and every body encoding Conveyor does, for the one-parse tests."""

import json
import sys
from collections import Counter
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

import conveyor._json

#: The name each kind of call is counted under.
PARSE = "parse"
ENCODE = "encode"


def count_parses(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Count the JSON parses and encodings from now on, by kind.

    `conveyor._json.loads` wherever it is imported, the standard library's ``json.loads``, and
    every msgspec JSON encoder a module of Conveyor holds as ``_encode`` (counted apart, under
    ``"encode <module>"``).
    """
    counts: Counter[str] = Counter()
    original = conveyor._json.loads

    def counted(kind: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
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
