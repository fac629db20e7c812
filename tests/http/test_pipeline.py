"""`conveyor run` as one pipeline: every outcome from the engine, one writer, the engine's summary.

On virtual time with a fake API. Each test pins one point: what the cache answers takes no
limiter slot, invalid lines and cache hits are settled by the engine (so its summary counts
them as they are), the counts shown in progress match the engine's, and a request stopped by
an exhausted quota is cancelled in the engine's summary and not written.
"""

import json
from pathlib import Path
from typing import Any

from conveyor import Retry
from conveyor.http import Batch, BatchFiles, BatchLimits, Endpoint, RawAnswer, prepare
from conveyor.llm import LlmOptions

from ..llm.test_cache_and_budget import answer
from .fakes import FakeAPI
from .helpers import chat_body, read_results, request_line, write_requests

QUOTA = {"error": {"message": "You exceeded your current quota.", "type": "insufficient_quota",
                   "code": "insufficient_quota"}}  # fmt: skip


class _Half:
    def random(self) -> float:
        return 0.5


async def _run(tmp_path: Path, api: FakeAPI, llm: LlmOptions | None = None, **limits: Any) -> Any:
    files = BatchFiles(input=tmp_path / "in.jsonl", output=tmp_path / "out.jsonl")
    plan = prepare(files, Endpoint(base_url="http://api.test"))
    batch = Batch(
        plan,
        limits=BatchLimits(**{"concurrency": 1, **limits}),
        retry=Retry(attempts=3, rng=_Half()),
        transport=api,
        llm=llm,
    )
    try:
        return batch, await batch.run()
    finally:
        plan.close()


def _counts(summary: Any) -> tuple[int, int, int, int]:
    return summary.total, summary.succeeded, summary.failed, summary.cancelled


def test_a_cache_hit_takes_no_limiter_slot_and_the_engine_counts_it(tmp_path, run):
    """A second run answered by the cache admits nothing through the limiter; all 4 succeed."""
    write_requests(tmp_path / "in.jsonl", 4)
    llm = LlmOptions(cache=tmp_path / "cache.db")
    run(_run(tmp_path, FakeAPI(answer), llm))
    (tmp_path / "out.jsonl").unlink()
    batch, result = run(_run(tmp_path, FakeAPI(answer), llm))
    assert batch.limiter.admitted == 0
    assert _counts(result.summary) == (4, 4, 0, 0)
    assert result.summary.latency_max_s == 0.0  # no attempt was made, so none was timed
    assert [r["latency_ms"] for r in read_results(tmp_path / "out.jsonl")] == [None] * 4


def test_invalid_lines_are_settled_by_the_engine_and_written_once(tmp_path, run):
    """Two lines that are not requests: failed in the engine's summary, one result each."""
    lines = [request_line("a"), "{not json", request_line("b"), '{"custom_id": "c"}']
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")
    api = FakeAPI(answer)
    batch, result = run(_run(tmp_path, api))
    assert api.calls == 2
    assert batch.limiter.admitted == 2  # the invalid lines took no slot
    assert _counts(result.summary) == (4, 2, 2, 0)
    codes = sorted(
        (r["error"] or {}).get("code", "ok") for r in read_results(tmp_path / "out.jsonl")
    )
    assert codes == ["invalid_line", "invalid_line", "ok", "ok"]
    assert (batch.tally.invalid, batch.tally.failed) == (2, 2)


def test_the_progress_counts_are_the_engines(tmp_path, run):
    """Cache hits, invalid lines, answers and failures: the tally agrees with the summary."""
    write_requests(tmp_path / "in.jsonl", 3)
    llm = LlmOptions(cache=tmp_path / "cache.db")
    run(_run(tmp_path, FakeAPI(answer), llm))  # caches req-0..req-2
    lines = (tmp_path / "in.jsonl").read_text().splitlines()
    bad = {"model": "mock-1", "messages": [{"role": "user", "content": "bad"}]}
    lines += [request_line("new", body=chat_body(10)), "{not json", request_line("bad", body=bad)]
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "out.jsonl").unlink()

    def script(n: int, body: Any, headers: Any) -> RawAnswer:
        if body["messages"][0]["content"] == "bad":
            return RawAnswer(400, {"content-type": "application/json"}, b'{"error": {}}')
        return answer(n, body, headers)

    batch, result = run(_run(tmp_path, FakeAPI(script), llm))
    tally, summary = batch.tally, result.summary
    assert (tally.succeeded, tally.failed, tally.cancelled) == (
        summary.succeeded,
        summary.failed,
        summary.cancelled,
    )
    assert tally.done == summary.total == 6
    assert (tally.cache_hits, tally.invalid) == (3, 1)


def test_a_quota_stopped_request_is_cancelled_by_the_engine_and_not_written(tmp_path, run):
    """The request that met the quota error is cancelled (not failed) and has no result line."""
    write_requests(tmp_path / "in.jsonl", 5)
    quota = RawAnswer(429, {"content-type": "application/json"}, json.dumps(QUOTA).encode())
    api = FakeAPI(lambda n, body, headers: answer(n, body, headers) if n <= 2 else quota)
    batch, result = run(_run(tmp_path, api))
    assert api.calls == 3
    assert _counts(result.summary) == (3, 2, 0, 1)
    assert [r["custom_id"] for r in read_results(tmp_path / "out.jsonl")] == ["req-0", "req-1"]
    assert batch.tally.cancelled == result.summary.cancelled == 1
    assert batch.tally.not_started == 2
    assert result.halted is not None
    assert "You exceeded your current quota." in result.halted
