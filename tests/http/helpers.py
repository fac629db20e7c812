"""Writing request files and reading result files, for the batch runner's tests."""

import json
from collections import Counter
from pathlib import Path
from typing import Any

CHAT_URL = "/v1/chat/completions"


def chat_body(i: int) -> dict[str, Any]:
    """A small chat body whose prompt differs per request."""
    return {"model": "mock-1", "messages": [{"role": "user", "content": f"hello {i}"}]}


def request_line(custom_id: str, *, url: str = CHAT_URL, **extra: Any) -> str:
    """One request in the OpenAI Batch format."""
    record = {"custom_id": custom_id, "method": "POST", "url": url, "body": chat_body(0)}
    record.update(extra)
    return json.dumps(record)


def write_requests(path: Path, n: int, *, prefix: str = "req-", url: str = CHAT_URL) -> list[str]:
    """Write `n` chat requests; return their custom_ids."""
    ids = [f"{prefix}{i}" for i in range(n)]
    with path.open("w") as f:
        for i, custom_id in enumerate(ids):
            record = {"custom_id": custom_id, "method": "POST", "url": url, "body": chat_body(i)}
            f.write(json.dumps(record) + "\n")
    return ids


def read_results(path: Path) -> list[dict[str, Any]]:
    """Every result line, parsed (fails on a torn or invalid line)."""
    with path.open("rb") as f:
        data = f.read()
    assert not data or data.endswith(b"\n"), "the last line is torn"
    return [json.loads(line) for line in data.splitlines()]


def id_counts(path: Path) -> Counter[str]:
    """How many times each custom_id appears in the results."""
    return Counter(r["custom_id"] for r in read_results(path))
