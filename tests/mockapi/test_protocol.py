"""The pure parts of the wire format: parsing, pricing, answers, headers, draws, counters."""

import dataclasses
import json
import math
import random

import pytest

from conveyor.mockapi import Faults, MockConfig
from conveyor.mockapi.draws import Fault, draw_fault, draw_latency_s
from conveyor.mockapi.headers import format_duration, rate_limit_headers, retry_after_headers
from conveyor.mockapi.protocol import (
    DEFAULT_MAX_TOKENS,
    BadRequest,
    chat_completion,
    cost_override,
    parse_chat,
)
from conveyor.mockapi.shared import SharedCounters
from conveyor.mockapi.stats import COUNTS, Counters, MockStats, SuccessLog
from conveyor.mockapi.window import Admission


def body(**fields: object) -> bytes:
    data: dict[str, object] = {
        "model": "mock-1",
        "messages": [{"role": "user", "content": "x" * 10}],
    }
    data.update(fields)
    return json.dumps(data).encode()


def test_cost_is_prompt_quarter_characters_plus_max_tokens():
    """Prompt tokens are ceil(characters / 4) over all messages; the cost adds max_tokens."""
    messages = [{"role": "system", "content": "abc"}, {"role": "user", "content": "defgh"}]
    parsed = parse_chat(body(messages=messages, max_tokens=5))
    assert (parsed.prompt_tokens, parsed.max_tokens, parsed.cost) == (2, 5, 7)


def test_max_tokens_defaults_and_aliases():
    """No max_tokens costs the default; max_completion_tokens is read like max_tokens."""
    assert parse_chat(body()).max_tokens == DEFAULT_MAX_TOKENS
    assert parse_chat(body(max_completion_tokens=3)).max_tokens == 3


def test_content_parts_count_their_text():
    """A list of text parts is priced like the string they join into."""
    parts = [{"type": "text", "text": "abcd"}, {"type": "text", "text": "efgh"}]
    assert parse_chat(body(messages=[{"role": "user", "content": parts}])).prompt_tokens == 2


@pytest.mark.parametrize(
    ("raw", "code", "param"),
    [
        (b"{not json", "invalid_json", None),
        (b"[1, 2]", "invalid_request", None),
        (json.dumps({"messages": []}).encode(), "missing_required_parameter", "model"),
        (body(messages=[]), "invalid_type", "messages"),
        (body(messages=[{"role": "user", "content": 5}]), "invalid_type", "messages[0]"),
        (body(max_tokens=0), "invalid_value", "max_tokens"),
        (body(max_tokens=True), "invalid_value", "max_tokens"),
    ],
)  # fmt: skip
def test_malformed_requests_say_what_is_wrong(raw, code, param):
    """Each malformed body is a BadRequest with OpenAI's code and the offending parameter."""
    with pytest.raises(BadRequest) as caught:
        parse_chat(raw)
    assert (caught.value.code, caught.value.param) == (code, param)


def test_cost_header_sets_the_cost():
    """x-mock-cost is read as whole tokens >= 1; anything else is a BadRequest."""
    assert cost_override(None) is None
    assert cost_override(" 42 ") == 42
    for bad in ("0", "-3", "1.5", "many"):
        with pytest.raises(BadRequest, match="x-mock-cost"):
            cost_override(bad)


def test_answer_is_deterministic_and_within_max_tokens():
    """The same prompt gets the same answer; usage adds up; completion stays <= max_tokens."""
    parsed = parse_chat(body(max_tokens=50))
    one = chat_completion(parsed, completion_id="a", created=1)
    two = chat_completion(parse_chat(body(max_tokens=50)), completion_id="a", created=1)
    assert one == two
    usage = one["usage"]
    assert usage["prompt_tokens"] == 3
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert 0 < usage["completion_tokens"] <= 50
    assert one["choices"][0]["finish_reason"] == "stop"
    other_prompt = parse_chat(body(messages=[{"role": "user", "content": "y"}]))
    other = chat_completion(other_prompt, completion_id="a", created=1)
    assert other["choices"][0]["message"]["content"] != one["choices"][0]["message"]["content"]


def test_a_small_max_tokens_cuts_the_answer():
    """An answer longer than max_tokens is cut to it, with finish_reason "length"."""
    answer = chat_completion(parse_chat(body(max_tokens=2)), completion_id="a", created=1)
    assert answer["usage"]["completion_tokens"] == 2
    assert len(answer["choices"][0]["message"]["content"]) == 8
    assert answer["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "0s"),
        (-1.0, "0s"),
        (0.0001, "1ms"),
        (0.02, "20ms"),
        (0.999, "999ms"),
        (1.0, "1s"),
        (17.326, "17.326s"),
        (59.9999, "1m0s"),
        (360.0, "6m0s"),
        (90.5, "1m30.5s"),
        (3725.25, "1h2m5.25s"),
    ],
)
def test_durations_print_like_openai(seconds, text):
    """Reset durations use OpenAI's (Go's) format, rounded up to the millisecond."""
    assert format_duration(seconds) == text


def test_retry_after_rounds_up():
    """Retry-After is whole seconds rounded up; retry-after-ms is milliseconds rounded up."""
    assert retry_after_headers(0.0004) == {"retry-after": "1", "retry-after-ms": "1"}
    assert retry_after_headers(2.0) == {"retry-after": "2", "retry-after-ms": "2000"}


def test_rate_limit_headers_cover_only_the_limited_dimensions():
    """Only a dimension with a limit gets its limit, remaining and reset headers."""
    admission = Admission(
        admitted=True, retry_after_s=0.0, remaining_requests=3, remaining_tokens=None, reset_s=1.5
    )
    headers = rate_limit_headers(admission, rpm=10, tpm=None, window_s=60.0)
    assert headers == {
        "x-ratelimit-limit-requests": "10",
        "x-ratelimit-remaining-requests": "3",
        "x-ratelimit-reset-requests": "1.5s",
    }


def test_rate_limit_headers_state_per_minute_figures_as_openai_does():
    """limit is the per-minute limit, remaining the window's remainder scaled to the minute.

    500 rpm over a 1 s window admits 8 a second: the headers say 500, and 7 left in the window
    is 420 a minute (not "limit 8, remaining 7", which read as 8 a minute to a client).
    """
    admission = Admission(
        admitted=True, retry_after_s=0.0, remaining_requests=7, remaining_tokens=700, reset_s=0.25
    )
    headers = rate_limit_headers(admission, rpm=500, tpm=90_000.5, window_s=1.0)
    assert headers == {
        "x-ratelimit-limit-requests": "500",
        "x-ratelimit-remaining-requests": "420",
        "x-ratelimit-reset-requests": "250ms",
        "x-ratelimit-limit-tokens": "90000",  # whole numbers, rounded down
        "x-ratelimit-remaining-tokens": "42000",
        "x-ratelimit-reset-tokens": "250ms",
    }


class Fixed:
    """A random source that returns the given samples in order."""

    def __init__(self, *samples: float) -> None:
        self.samples = list(samples)

    def random(self) -> float:
        return self.samples.pop(0)

    def lognormvariate(self, mu: float, sigma: float) -> float:
        return math.exp(mu + sigma * self.samples.pop(0))


def test_one_draw_cuts_the_unit_interval_into_faults():
    """Draws below fail, then hang, then drop fractions pick that fault; the rest pick none."""
    faults = Faults(fail_rate=0.1, hang_rate=0.2, drop_rate=0.3)
    picks = [draw_fault(faults, Fixed(u)) for u in (0.0, 0.15, 0.35, 0.61, 0.99)]
    assert picks == [Fault.FAIL, Fault.HANG, Fault.DROP, Fault.NONE, Fault.NONE]


def test_no_faults_draw_nothing():
    """Without faults the random source is not touched (seeded runs stay aligned)."""
    assert draw_fault(Faults(), Fixed()) is Fault.NONE


def test_lognormal_latency_has_the_median_asked_for():
    """A lognormal draw at the normal's median is latency_ms; fixed ignores the source."""
    config = MockConfig(latency_ms=40.0, latency="lognormal", latency_sigma=0.5)
    assert draw_latency_s(config, Fixed(0.0)) == pytest.approx(0.040)
    assert draw_latency_s(config, Fixed(1.0)) == pytest.approx(0.040 * math.exp(0.5))
    assert draw_latency_s(MockConfig(latency_ms=40.0), Fixed()) == 0.040


def test_seeded_lognormal_latencies_center_on_the_median():
    """Over many seeded draws, half the latencies lie under the median."""
    config = MockConfig(latency_ms=50.0, latency="lognormal", latency_sigma=0.8)
    rng = random.Random(1)
    draws = sorted(draw_latency_s(config, rng) for _ in range(4001))
    assert draws[2000] == pytest.approx(0.050, rel=0.05)


def test_snapshot_copies_every_count_and_no_other_can_be_kept():
    """Every count of MockStats is a live counter the snapshot copies; no other can be kept."""
    counters = Counters()
    for value, name in enumerate(COUNTS, start=1):
        setattr(counters, name, value)
    snapshot = counters.snapshot()
    assert [getattr(snapshot, name) for name in COUNTS] == list(range(1, len(COUNTS) + 1))
    assert set(COUNTS) == {f.name for f in dataclasses.fields(MockStats)} - {"active_s"}
    with pytest.raises(AttributeError):
        counters.not_a_count = 1


def test_active_span_runs_from_first_request_to_last_answer():
    """active_s is the last answer's time minus the first request's, and 0 before any answer."""
    counters = Counters()
    counters.enter(10.0)
    assert counters.snapshot().active_s == 0.0
    counters.enter(10.5)
    counters.last_at = 12.25
    assert counters.snapshot().active_s == 2.25
    counters.reset()
    assert counters.snapshot().active_s == 0.0


def test_reset_keeps_what_is_in_flight():
    """Resetting zeroes the counts, but requests still in flight stay counted."""
    counters = Counters()
    counters.enter(1.0)
    counters.enter(2.0)
    counters.in_flight -= 1
    counters.ok = 5
    counters.reset()
    assert counters.snapshot() == MockStats(in_flight=1, peak_in_flight=1)


def test_success_log_forgets_the_oldest_past_its_bound():
    """The id log keeps at most max_ids ids, dropping the oldest first."""
    log = SuccessLog(max_ids=2)
    for request_id in ("a", "b", "c"):
        log.add(request_id)
    assert ("a" in log, "b" in log, "c" in log) == (False, True, True)
    log.clear()
    assert "c" not in log


def test_shared_counters_sum_rows_and_reset_every_process():
    """Each process publishes its row; the total sums counts and spans first to last times."""
    parent = SharedCounters.create(2)
    try:
        first = SharedCounters.attach(parent.name, 2, 0)
        second = SharedCounters.attach(parent.name, 2, 1)
        a, b = Counters(), Counters()
        a.enter(5.0)
        a.ok, a.in_flight, a.last_at = 1, 0, 5.5
        b.enter(4.0)
        b.enter(4.5)
        b.ok, b.in_flight, b.last_at = 1, 1, 7.0
        first.publish(a)
        second.publish(b)
        total = parent.total()
        assert (total.requests, total.ok, total.in_flight, total.active_s) == (3, 2, 1, 3.0)
        generation = first.generation
        first.reset_all()
        assert second.generation == generation + 1 != second.seen_generation
        assert parent.total() == MockStats()
        first.close()
        second.close()
    finally:
        parent.close()
        parent.unlink()


def test_a_body_nested_100_000_deep_is_a_bad_request_not_a_crash():
    """The mock API answers a 100,000-deep body as invalid_json (400), as any unparsable one."""
    with pytest.raises(BadRequest) as caught:
        parse_chat(b"[" * 100_000)
    assert caught.value.code == "invalid_json"
    assert "nests arrays and objects more than 128 deep" in str(caught.value)
