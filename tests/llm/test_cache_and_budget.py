"""The response cache and the spend budget in a batch run, on virtual time with a fake API."""

import json
from pathlib import Path

import pytest

from conveyor import ConfigError, Retry
from conveyor.http import Batch, BatchFiles, BatchLimits, Endpoint, RawAnswer, prepare
from conveyor.llm import (
    CACHE_HEADER,
    LlmOptions,
    Price,
    PriceTable,
    ResponseCache,
    cache_key,
    usage_of,
)

from ..http.fakes import FakeAPI, status
from ..http.helpers import id_counts, read_results, write_requests

#: One dollar a token, in and out: costs read as token counts.
DOLLAR_A_TOKEN = PriceTable({"mock-1": Price(1_000_000.0, 1_000_000.0)})


def answer(n: int, body, headers) -> RawAnswer:
    data = {
        "model": "mock-1",
        "choices": [{"index": 0, "message": {"content": "ok"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }
    return RawAnswer(200, {"content-type": "application/json"}, json.dumps(data).encode())


class _Half:
    def random(self) -> float:
        return 0.5


async def _run(
    tmp_path: Path,
    api: FakeAPI,
    llm: LlmOptions,
    *,
    retry_failed: bool = False,
    concurrency: int = 1,
):
    files = BatchFiles(
        input=tmp_path / "in.jsonl", output=tmp_path / "out.jsonl", retry_failed=retry_failed
    )
    plan = prepare(files, Endpoint(base_url="http://api.test"))
    batch = Batch(
        plan,
        limits=BatchLimits(concurrency=concurrency),
        retry=Retry(attempts=2, rng=_Half()),
        transport=api,
        llm=llm,
    )
    try:
        return batch, await batch.run()
    finally:
        plan.close()


def test_a_second_run_with_the_cache_sends_nothing(tmp_path, run):
    """Answers stored by one run answer the next: zero calls, hits counted and marked."""
    ids = write_requests(tmp_path / "in.jsonl", 5)
    llm = LlmOptions(cache=tmp_path / "cache.db")
    first = FakeAPI(answer)
    run(_run(tmp_path, first, llm))
    (tmp_path / "out.jsonl").unlink()
    second = FakeAPI(answer)
    batch, result = run(_run(tmp_path, second, llm))
    assert (first.calls, second.calls) == (5, 0)
    assert (batch.tally.cache_hits, result.summary.succeeded, result.summary.total) == (5, 5, 5)
    records = read_results(tmp_path / "out.jsonl")
    assert id_counts(tmp_path / "out.jsonl") == dict.fromkeys(ids, 1)
    assert all(r["response"]["headers"][CACHE_HEADER] == "hit" for r in records)
    assert all(r["attempts"] == 0 for r in records)  # never sent
    assert records[0]["response"]["body"]["usage"]["total_tokens"] == 15


def test_errors_and_429s_are_never_cached(tmp_path, run):
    """Only successes are stored: failed requests are sent again by the next run."""
    write_requests(tmp_path / "in.jsonl", 3)

    def script(n, body, headers):
        content = body["messages"][0]["content"]
        if content == "hello 1":
            return status(429, "slow down", {"retry-after-ms": "10"})
        if content == "hello 2":
            return status(500, "oops")
        return answer(n, body, headers)

    llm = LlmOptions(cache=tmp_path / "cache.db")
    run(_run(tmp_path, FakeAPI(script), llm))
    assert len(ResponseCache(tmp_path / "cache.db")) == 1
    again = FakeAPI(answer)
    run(_run(tmp_path, again, llm, retry_failed=True))
    assert again.calls == 2  # the two failures; the success came from the results file


def test_the_cache_key_covers_the_upstream_method_url_and_body():
    """A different scope, method, url or body is a different entry."""
    base = cache_key("http://a", "POST", "/v1/x", b"{}")
    others = [
        cache_key("http://b", "POST", "/v1/x", b"{}"),
        cache_key("http://a", "PUT", "/v1/x", b"{}"),
        cache_key("http://a", "POST", "/v1/y", b"{}"),
        cache_key("http://a", "POST", "/v1/x", b"{ }"),
    ]
    assert base not in others
    assert len(set(others)) == 4


def test_the_cache_refuses_to_store_an_error(tmp_path):
    """put() with a non-2xx status raises: nothing but successes gets in."""
    cache = ResponseCache(tmp_path / "c.db")
    with pytest.raises(ConfigError, match="only successful"):
        cache.put("k", 429, {}, {})
    cache.close()


def test_tokens_and_cost_are_counted_with_a_projection(tmp_path, run):
    """Tokens in/out and cost come from usage and the price table; the projection scales."""
    write_requests(tmp_path / "in.jsonl", 4)
    batch, _ = run(_run(tmp_path, FakeAPI(answer), LlmOptions(prices=DOLLAR_A_TOKEN)))
    tally = batch.tally
    assert (tally.tokens_in, tally.tokens_out, tally.cost_usd) == (40, 20, 60.0)
    assert tally.projected_cost_usd == 60.0
    tally.total = 8
    assert tally.projected_cost_usd == 120.0


@pytest.mark.parametrize("concurrency", [1, 4])
def test_the_budget_stops_admission_and_the_rest_stays_pending(tmp_path, run, concurrency):
    """No request starts that could pass --max-cost; a run with more budget resumes the rest.

    At concurrency 4 as at 1: a request that does not fit beside those in flight waits for
    them to settle (each costs less than its bound), so the same three are sent.
    """
    ids = write_requests(tmp_path / "in.jsonl", 10)
    # Each request may cost 2 (prompt) + 16 (default max_tokens) = $18 and does cost $15:
    # $0 + 18, $15 + 18, $30 + 18 fit under $50; $45 + 18 does not.
    api = FakeAPI(answer)
    llm = LlmOptions(prices=DOLLAR_A_TOKEN, max_cost_usd=50)
    batch, result = run(_run(tmp_path, api, llm, concurrency=concurrency))
    assert api.calls == 3
    assert result.halted is not None
    assert result.halted.startswith("budget reached")
    assert "of $50 (--max-cost)" in result.halted
    assert (batch.tally.not_started, result.summary.failed) == (7, 0)
    assert batch.tally.cost_usd == 45.0
    more = FakeAPI(answer)
    run(_run(tmp_path, more, LlmOptions(prices=DOLLAR_A_TOKEN, max_cost_usd=1000)))
    assert more.calls == 7
    assert id_counts(tmp_path / "out.jsonl") == dict.fromkeys(ids, 1)


@pytest.mark.parametrize("concurrency", [1, 2])
def test_a_request_waiting_for_its_retry_never_stalls_the_budget(tmp_path, run, concurrency):
    """A 503, then a retry, with room for one bound ($18 of $30): the run ends either way."""
    write_requests(tmp_path / "in.jsonl", 3)

    def script(n: int, body, headers) -> RawAnswer:
        return status(503, "busy") if n == 1 else answer(n, body, headers)

    api = FakeAPI(script)
    llm = LlmOptions(prices=DOLLAR_A_TOKEN, max_cost_usd=30)
    batch, result = run(_run(tmp_path, api, llm, concurrency=concurrency))
    assert result.halted is not None
    assert result.halted.startswith("budget reached")
    assert "of $30 (--max-cost)" in result.halted
    assert batch.tally.cost_usd == 15.0  # one answer: $15 + a bound of $18 passes $30
    assert api.calls == 2


def test_a_budget_with_an_unpriced_model_stops_before_sending(tmp_path, run):
    """A model with no price cannot be kept within a budget: nothing is sent, and it says so."""
    write_requests(tmp_path / "in.jsonl", 2)
    api = FakeAPI(answer)
    table = PriceTable({"other": Price(1, 1)})
    _, result = run(_run(tmp_path, api, LlmOptions(prices=table, max_cost_usd=5)))
    assert api.calls == 0
    assert result.halted is not None
    assert "no price for the model 'mock-1'" in result.halted


def test_the_default_price_table_is_dated_and_matches_dated_model_names():
    """The shipped table has a date and prices gpt-4o-mini-2024-07-18 as gpt-4o-mini."""
    table = PriceTable.default()
    assert table.date
    assert table.price("gpt-4o-mini-2024-07-18") == table.price("gpt-4o-mini")
    assert table.price("gpt-4o-mini") != table.price("gpt-4o")
    usage = usage_of({"model": "gpt-4o-mini", "usage": {"prompt_tokens": 1_000_000}})
    assert usage is not None
    assert table.answer_cost_usd(usage) == pytest.approx(0.15)


def test_a_user_price_file_overrides_and_a_bad_one_is_explained(tmp_path):
    """PriceTable.load reads the documented format; a missing price names the model."""
    good = tmp_path / "prices.toml"
    good.write_text('date = "2026-01-01"\n[models."my-model"]\ninput = 1.0\noutput = 2.0\n')
    assert PriceTable.load(good).price("my-model") == Price(1.0, 2.0)
    bad = tmp_path / "bad.toml"
    bad.write_text('[models."my-model"]\ninput = 1.0\n')
    with pytest.raises(ConfigError, match="my-model"):
        PriceTable.load(bad)


def test_the_progress_line_shows_tokens_cost_projection_and_cache_hits():
    """The plain progress line adds the spend once there is some; none before."""
    from conveyor.cli.run_view import progress_line
    from conveyor.http import BatchTally
    from conveyor.http.tally import RateMeter, snapshot

    tally = BatchTally(total=10, succeeded=2, tokens_in=200, tokens_out=50, cost_usd=0.5)
    tally.cache_hits = 1
    line = progress_line(snapshot(tally, RateMeter(), now=1.0, started=0.0))
    assert "200 in / 50 out tokens, $0.5000 (projected $2.50), 1 cached;" in line
    empty = progress_line(snapshot(BatchTally(total=10), RateMeter(), now=1.0, started=0.0))
    assert "tokens" not in empty
