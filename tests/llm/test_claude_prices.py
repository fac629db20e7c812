"""Claude's models in the default price table, prompt-cache prices, a budget on Claude lines."""

import doctest
from pathlib import Path

import pytest

from conveyor import ConfigError, Retry
from conveyor.http import Batch, BatchFiles, BatchLimits, Endpoint, prepare
from conveyor.llm import LlmOptions, Price, PriceTable, usage_of
from conveyor.llm import pricing as pricing_module
from conveyor.llm import validate as validate_module

from ..http.fakes import FakeAPI
from ..http.test_claude_run import answer, message, write_lines


class _Half:
    def random(self) -> float:
        return 0.5


@pytest.mark.parametrize(
    ("model", "dollars_in", "dollars_out"),
    [
        ("claude-opus-4-1", 15.0, 75.0),
        ("claude-opus-4", 15.0, 75.0),
        ("claude-sonnet-4-5", 3.0, 15.0),
        ("claude-sonnet-4", 3.0, 15.0),
        ("claude-3-7-sonnet", 3.0, 15.0),
        ("claude-haiku-4-5", 1.0, 5.0),
        ("claude-3-5-haiku", 0.8, 4.0),
        ("claude-3-haiku", 0.25, 1.25),
        # Dated snapshots and aliases, by prefix.
        ("claude-haiku-4-5-20251001", 1.0, 5.0),
        ("claude-opus-4-1-20250805", 15.0, 75.0),
        ("claude-opus-4-0", 15.0, 75.0),
        ("claude-opus-4-5-20251101", 5.0, 25.0),  # not priced as claude-opus-4
    ],
)
def test_the_default_table_prices_claudes_models_with_a_date(model, dollars_in, dollars_out):
    """Each current model, as the API names it, has its list price and the date it was checked."""
    price = PriceTable.default().price(model)
    assert price is not None
    assert (price.input, price.output) == (dollars_in, dollars_out)
    assert price.date


def test_anthropic_cache_writes_and_reads_are_priced_as_such():
    """Cache writes at 1.25x input, reads at 0.1x: from the usage's own fields."""
    usage = usage_of(
        {
            "model": "claude-haiku-4-5",
            "usage": {
                "input_tokens": 1_000_000,
                "output_tokens": 200_000,
                "cache_creation_input_tokens": 400_000,
                "cache_read_input_tokens": 2_000_000,
            },
        }
    )
    assert usage is not None
    assert usage.prompt_tokens == 3_400_000
    # $1.00 input + $1.00 output + $0.50 cache writes + $0.20 cache reads.
    assert PriceTable.default().answer_cost_usd(usage) == pytest.approx(2.70)


def test_a_model_without_cache_prices_has_cache_tokens_priced_as_input(tmp_path: Path):
    """A price file may leave the cache prices out (priced as input); a bad one is named."""
    path = tmp_path / "prices.toml"
    path.write_text('[models."m"]\ninput = 2.0\noutput = 4.0\n')
    price = PriceTable.load(path).price("m")
    assert price == Price(2.0, 4.0)
    assert price.cost_usd(0, 0, 1_000_000, 1_000_000) == 4.0
    path.write_text('[models."m"]\ninput = 2.0\noutput = 4.0\ncache_read = "cheap"\n')
    with pytest.raises(ConfigError, match="has cache_read = 'cheap'"):
        PriceTable.load(path)


def test_max_cost_keeps_a_budget_on_claude_lines(tmp_path: Path, run):
    """--max-cost on claude-haiku-4-5 lines: priced, so the run goes until the budget binds."""
    write_lines(tmp_path / "in.jsonl", 10)
    # Each line: 30 input tokens and up to 64 output: at most $0.00035; each answer costs
    # 30 x $1 + 10 x $5 per million = $0.00008.
    api = FakeAPI(lambda n, body, headers: answer(200, message()))
    files = BatchFiles(input=tmp_path / "in.jsonl", output=tmp_path / "out.jsonl")
    plan = prepare(files, Endpoint(base_url="https://api.anthropic.com"))
    batch = Batch(
        plan,
        limits=BatchLimits(concurrency=1),
        retry=Retry(attempts=2, rng=_Half()),
        transport=api,
        llm=LlmOptions(max_cost_usd=0.0006),
    )
    try:
        result = run(batch.run())
    finally:
        plan.close()
    assert result.halted is not None
    assert result.halted.startswith("budget reached")
    assert "of $0.0006 (--max-cost)" in result.halted
    assert api.calls == 4  # $0.00024 spent + a bound of $0.00035 passes $0.0006
    assert batch.tally.cost_usd == pytest.approx(4 * 0.00008)
    assert batch.tally.unpriced == 0


@pytest.mark.parametrize("module", [pricing_module, validate_module])
def test_the_docstring_examples_hold(module):
    """The pricing and answer-check modules' examples are right."""
    assert doctest.testmod(module).failed == 0
