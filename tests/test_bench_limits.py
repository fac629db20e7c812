"""bench/limits.py's pure parts: the ideal times are the mock window's real bounds, the costs exact.

A benchmark that judges against a wrong ideal judges wrongly, so each formula is checked here
against the mock API's own window (`ServerWindow`), packed as early as it admits.
"""

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from conveyor.http import estimate_tokens
from conveyor.mockapi import MockConfig
from conveyor.mockapi.protocol import parse_chat
from conveyor.mockapi.window import ServerWindow

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _load(name: str, path: Path) -> ModuleType:
    """Load a bench file by its location (bench/ is not a package and shadows `http`)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


ideal = _load("bench_limit_ideal", BENCH / "limit_scenarios" / "ideal.py")
driver = _load("bench_limits", BENCH / "limits.py")  # registers the limit_scenarios package
scenarios = sys.modules["limit_scenarios"]
slow = sys.modules["limit_scenarios.slow_answers"]
common = sys.modules["limit_scenarios.common"]


def packed_end_s(costs: list[int], *, requests: int, tokens: int, latency_s: float) -> float:
    """Send each call the moment the mock's window admits it; return when the last answers."""
    window = ServerWindow(window_s=1.0, max_requests=requests, max_tokens=tokens)
    t = 0.0
    for cost in costs:
        while not (admission := window.try_admit(t, cost)).admitted:
            t += admission.retry_after_s
    return t + latency_s


@pytest.mark.parametrize(
    ("n", "cost", "requests", "tokens"),
    [
        (120, 430, 8, 3333),  # (b): the tokens bind, 7 calls a window
        (120, 100, 8, 3333),  # the requests bind, 8 a window
        (50, 1000, 100, 3000),  # 3 a window, 50 / 3 not whole
        (7, 430, 8, 3333),  # one window
    ],
)
def test_uniform_ideal_is_what_the_mock_window_allows(n, cost, requests, tokens):
    expected = packed_end_s([cost] * n, requests=requests, tokens=tokens, latency_s=2.5)
    got = ideal.uniform_ideal_s(
        requests=n,
        cost=cost,
        request_share=requests,
        token_share=tokens,
        window_s=1.0,
        latency_s=2.5,
    )
    assert got == pytest.approx(expected)


def test_scenario_b_ideal_is_19_5_s_not_the_fluid_17_5():
    config = MockConfig(
        latency_ms=slow.LATENCY_MS, rpm=500, tpm=200_000, window_s=1.0
    )  # what (b) and (c) enforce
    assert (config.request_share, config.token_share) == (8, 3333)
    kwargs = {"request_share": 8, "token_share": 3333, "window_s": 1.0, "latency_s": 2.5}
    assert ideal.uniform_ideal_s(requests=slow.N, cost=slow.COST, **kwargs) == 19.5
    assert ideal.window_ideal_s(requests=slow.N, tokens=slow.N * slow.COST, **kwargs) == 17.5


def test_window_ideal_is_a_lower_bound_for_scenario_a():
    chat = sys.modules["limit_scenarios.chat_costs"]
    reqs = chat.make_requests()
    bound = chat.ideal_s(reqs)
    assert bound == pytest.approx(10.05)  # the figure bench/limits.py has always printed
    packed = packed_end_s([r.cost for r in reqs], requests=60, tokens=9000, latency_s=0.05)
    assert bound <= packed + 1e-9


def test_slow_calls_cost_exactly_430_to_the_mock_and_to_conveyors_estimate():
    for i in (0, 7, 119):
        kwargs = slow.call_kwargs(i)
        body = {k: v for k, v in kwargs.items() if k != "extra_headers"}
        assert parse_chat(json.dumps(body).encode()).cost == slow.COST == 430
        assert estimate_tokens(body, None) == 430


def test_the_hand_written_buckets_admit_at_most_a_share_per_window():
    for share, unit in ((500 / 60, 1), (200_000 / 60, 430), (240_000 / 60, 430)):
        bucket = slow.strict_bucket(share, unit)
        drained_per_window = bucket.max_rate / bucket.time_period * slow.WINDOW_S
        assert bucket.max_rate == unit
        assert bucket.max_rate + drained_per_window == pytest.approx(share)


def test_bucket_ideal_is_the_throttle_scenarios_figure():
    assert ideal.bucket_ideal_s(requests=300, rate=40.0, burst=40.0, op_s=0.005) == 6.505


def test_retry_after_reads_openai_errors_and_prefers_milliseconds_when_precise():
    class OpenAIShaped(Exception):
        def __init__(self) -> None:
            super().__init__("429")
            self.response = SimpleNamespace(headers={"retry-after": "1", "retry-after-ms": "250"})

    exc = OpenAIShaped()
    assert common.retry_after_of(exc) == 1.0
    assert common.retry_after_of(exc, precise=True) == 0.25


def _outcome(overloaded: int | None) -> Any:
    row = common.Row(contender="conveyor", ok=3, seconds=2.0, pushbacks=1, overloaded=overloaded)
    return common.Outcome(
        key="x", title="(x) t", about="w", ideal_s=1.0, total=3, rows=[row], checks=[]
    )


def test_the_table_shows_529s_only_where_an_api_can_answer_them():
    assert "529s" not in driver.table(_outcome(None))[2]
    with_529s = driver.table(_outcome(4))
    assert with_529s[2].split()[-1] == "529s"
    assert with_529s[3].split()[-1] == "4"
    assert with_529s[3].split()[3] == "2.000"


def test_the_registry_holds_every_scenario_and_each_runs():
    keys = [s.key for s in scenarios.SCENARIOS]
    assert keys == ["a", "faults", "hangs", "b", "c", "d", "e", "f"]
    assert all(s.run is not None for s in scenarios.SCENARIOS)


def test_the_anthropic_ideal_is_the_binding_budget_plus_one_latency():
    from limit_scenarios import anthropic_buckets as d

    calls = [d.Call(0, 300, 10), d.Call(1, 300, 10)]  # input binds: 600 / 1,500 a second
    assert d.ideal_s(calls) == pytest.approx(max(2 / 10, 600 / 1500, 20 / 200) + 0.4)
