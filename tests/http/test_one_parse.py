"""`conveyor run` parses each request once and each answer once, however many attempts."""

from collections.abc import Mapping
from pathlib import Path

import pytest

from conveyor import Retry
from conveyor.http import Batch, BatchFiles, BatchLimits, Endpoint, RawAnswer, prepare
from conveyor.llm import LlmOptions, PriceTable

from ..parse_counts import PARSE, count_parses
from .helpers import id_counts, write_requests

N = 100
PRICES = PriceTable.parse('[models."mock-1"]\ninput = 1.0\noutput = 2.0\n')
_OK = RawAnswer(
    200,
    {"content-type": "application/json"},
    b'{"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}',
)
_BUSY = RawAnswer(503, {"content-type": "application/json"}, b'{"error": {"message": "busy"}}')


class _EveryThirdFailsOnce:
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


@pytest.mark.parametrize("budget", [None, 100.0], ids=["plain", "budget"])
def test_each_request_is_parsed_and_encoded_once_and_each_answer_parsed_once(
    tmp_path: Path, run, monkeypatch: pytest.MonkeyPatch, budget: float | None
) -> None:
    """One parse per request and per answer, one body encoding per request, during a run.

    A spend budget reads each request's bound from its value, not from its bytes again.
    """
    write_requests(tmp_path / "in.jsonl", N)
    plan = prepare(
        BatchFiles(input=tmp_path / "in.jsonl", output=tmp_path / "out.jsonl"),
        Endpoint(base_url="http://api.test"),
    )
    api = _EveryThirdFailsOnce()
    batch = Batch(
        plan,
        limits=BatchLimits(concurrency=10),
        retry=Retry(attempts=3, base_delay_s=0.01),
        transport=api,
        llm=LlmOptions(max_cost_usd=budget, prices=PRICES),
    )
    counts = count_parses(monkeypatch)
    try:
        result = run(batch.run())
    finally:
        plan.close()
    parses = counts[PARSE]
    assert result.summary.succeeded == N
    assert api.calls > N  # some requests took two attempts
    assert id_counts(tmp_path / "out.jsonl") == {f"req-{i}": 1 for i in range(N)}
    assert parses == N + api.calls
    assert counts["encode conveyor.http.request"] == N
    assert counts["encode conveyor.http.results"] == N
