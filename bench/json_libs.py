"""Which JSON library the batch runner uses: json, orjson and msgspec on its four JSON steps.

Per request the runner parses a request line, encodes its body, decodes the answer and encodes
the result line. Each step is timed on a realistic chat request and answer, 20,000 times per
library; the figure is microseconds per call.

Run it with ``python bench/json_libs.py``.
"""

from __future__ import annotations

import json
import timeit
from typing import Any

import msgspec
import orjson

N = 20_000
LINE = json.dumps(
    {
        "custom_id": "req-12345",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "Extract the tracking number: " + "lorem ipsum " * 40},
            ],
            "max_tokens": 200,
        },
    }
).encode()
BODY = json.loads(LINE)["body"]
ANSWER = json.dumps(
    {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "It is 1Z999AA10123456784. " * 3},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150},
    }
).encode()
RESULT = {
    "custom_id": "req-1",
    "error": None,
    "response": {"status_code": 200, "headers": {"x-request-id": "a"}, "body": json.loads(ANSWER)},
    "attempts": 1,
    "latency_ms": 51.2,
}


def steps() -> dict[str, dict[str, Any]]:
    decoder, encoder = msgspec.json.Decoder(), msgspec.json.Encoder()
    libs: dict[str, dict[str, Any]] = {
        "json": {
            "parse line": lambda: json.loads(LINE),
            "encode body": lambda: json.dumps(BODY, separators=(",", ":")).encode(),
            "decode answer": lambda: json.loads(ANSWER),
            "encode result": lambda: json.dumps(RESULT, ensure_ascii=False, separators=(",", ":")),
        },
        "msgspec": {
            "parse line": lambda: decoder.decode(LINE),
            "encode body": lambda: encoder.encode(BODY),
            "decode answer": lambda: decoder.decode(ANSWER),
            "encode result": lambda: encoder.encode(RESULT).decode(),
        },
    }
    libs["orjson"] = {
        "parse line": lambda: orjson.loads(LINE),
        "encode body": lambda: orjson.dumps(BODY),
        "decode answer": lambda: orjson.loads(ANSWER),
        "encode result": lambda: orjson.dumps(RESULT).decode(),
    }
    return libs


def main() -> None:
    libs = steps()
    names = list(next(iter(libs.values())))
    print(f"µs per call, best of 3 x {N:,} calls")
    print(f"{'step':<15}" + "".join(f"{lib:>10}" for lib in libs))
    totals = dict.fromkeys(libs, 0.0)
    for step in names:
        row = f"{step:<15}"
        for lib, fns in libs.items():
            us = min(timeit.repeat(fns[step], number=N, repeat=3)) / N * 1e6
            totals[lib] += us
            row += f"{us:>10.2f}"
        print(row)
    print(f"{'per request':<15}" + "".join(f"{totals[lib]:>10.2f}" for lib in libs))


if __name__ == "__main__":
    main()
