"""`conveyor._json.loads`, the one reader of JSON from outside: where its depth limit falls."""

import pytest

from conveyor._json import MAX_DEPTH, BadJSON, loads


def _nested(levels: int) -> bytes:
    """Arrays and objects in turn, `levels` deep: ``[{"a": [{"a": ... 1 ...}]}]``."""
    opening = [b"[" if level % 2 == 0 else b'{"a": ' for level in range(levels)]
    closing = [b"]" if level % 2 == 0 else b"}" for level in reversed(range(levels))]
    return b"".join(opening) + b"1" + b"".join(closing)


def test_the_depth_limit_is_128_arrays_and_objects_counted_together():
    """128 levels of arrays and objects are read; 129 are refused, saying so, never recursing."""
    assert MAX_DEPTH == 128
    assert loads(b"[" * 128 + b"]" * 128) is not None
    assert loads(_nested(128)) is not None
    for text in (b"[" * 129 + b"]" * 129, _nested(129), b"[" * 100_000 + b"]" * 100_000):
        with pytest.raises(BadJSON) as caught:
            loads(text)
        assert caught.value.too_deep
        assert "more than 128 deep" in caught.value.problem


def test_brackets_inside_strings_do_not_count_toward_the_depth():
    """A string full of brackets (escaped quotes too) is one value, not deep nesting."""
    text = b'["' + b"[{" * 500 + b'\\"' + b"[" * 500 + b'"]'
    assert loads(text)[0].startswith("[{")
