"""`conveyor run` parses each request once and each answer once, however many attempts."""

from pathlib import Path

import pytest

from conveyor import Retry
from conveyor.http import Batch, BatchFiles, BatchLimits, Endpoint, prepare
from conveyor.llm import LlmOptions, PriceTable

from ..parse_counts import PARSE, EveryThirdFailsOnce, count_parses
from .helpers import id_counts, write_requests

N = 100
PRICES = PriceTable.parse('[models."mock-1"]\ninput = 1.0\noutput = 2.0\n')


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
    api = EveryThirdFailsOnce()
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
