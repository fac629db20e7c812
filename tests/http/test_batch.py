"""The batch run on virtual time, with the network replaced by a scripted fake API."""

import asyncio
import json
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from conveyor import Retry
from conveyor.http import (
    Batch,
    BatchFiles,
    BatchLimits,
    BatchResult,
    Endpoint,
    OutputError,
    RawAnswer,
    TransportError,
    prepare,
)
from conveyor.http.output import ResultFile
from conveyor.testing import VirtualClock

from .fakes import FakeAPI, ok, status
from .helpers import id_counts, read_results, request_line, write_requests

SECRET = "Bearer sk-test-0123456789abcdef"  # noqa: S105 - a made-up test value


async def run_batch(
    tmp_path: Path,
    api: FakeAPI,
    *,
    limits: BatchLimits | None = None,
    retry: Retry | None = None,
    endpoint: Endpoint | None = None,
    retry_failed: bool = False,
    stop_after: int | None = None,
) -> tuple[Batch, BatchResult]:
    """Plan and run in.jsonl -> out.jsonl against `api`; optionally stop after N results."""
    files = BatchFiles(
        input=tmp_path / "in.jsonl", output=tmp_path / "out.jsonl", retry_failed=retry_failed
    )
    plan = prepare(files, endpoint or Endpoint(base_url="http://api.test"))
    batch = Batch(
        plan,
        limits=limits or BatchLimits(concurrency=10),
        retry=retry or Retry(attempts=4, rng=_Half()),
        transport=api,
    )
    if stop_after is not None:
        plan.results = _StopAfter.wrap(plan.results, stop_after, batch)
    try:
        return batch, await batch.run()
    finally:
        plan.close()


class _StopAfter(ResultFile):
    """A results file that stops the batch once it has written `limit` results."""

    __slots__ = ("batch", "limit")
    batch: Batch
    limit: int

    @classmethod
    def wrap(cls, results: ResultFile, limit: int, batch: Batch) -> "_StopAfter":
        wrapped = cls(results.path, results._fd)
        wrapped.limit, wrapped.batch = limit, batch
        return wrapped

    def write(self, line: str) -> None:
        super().write(line)
        if self.written == self.limit:
            self.batch.stop()


class _FullDisk(ResultFile):
    """A results file whose writes fail after the first three."""

    __slots__ = ()

    def write(self, line: str) -> None:
        if self.written >= 3:
            raise OutputError("writing out.jsonl failed: No space left on device")
        super().write(line)


class _Half:
    """Jitter that always draws the middle: backoff delays are exact."""

    def random(self) -> float:
        return 0.5


def test_every_request_is_written_exactly_once(tmp_path: Path, run):
    """Every request settles into exactly one result line; the summary counts them."""
    ids = write_requests(tmp_path / "in.jsonl", 50)
    api = FakeAPI()
    batch, result = run(run_batch(tmp_path, api))
    assert id_counts(tmp_path / "out.jsonl") == dict.fromkeys(ids, 1)
    assert (result.summary.total, result.summary.succeeded, result.interrupted) == (50, 50, False)
    assert (batch.tally.sent, batch.tally.done, batch.limiter.admitted) == (50, 50, 50)
    record = read_results(tmp_path / "out.jsonl")[0]
    assert record["response"]["body"] == {"ok": True}
    assert api.headers[0]["Content-Type"] == "application/json"
    assert api.headers[0]["User-Agent"].startswith("conveyor/")


def test_concurrency_is_the_cap_in_flight(tmp_path: Path, run):
    """No more requests are in flight than --concurrency."""
    write_requests(tmp_path / "in.jsonl", 40)
    peak = 0

    def script(n, body, headers):
        nonlocal peak
        peak = max(peak, api.in_flight + 1)
        return ok()

    api = FakeAPI(script)
    _, result = run(run_batch(tmp_path, api, limits=BatchLimits(concurrency=7)))
    assert peak == 7
    assert result.summary.max_concurrency == 7


def test_a_429_pauses_everyone_and_is_retried_after_retry_after(tmp_path: Path, run, clock):
    """A 429 with retry-after-ms pauses the shared limiter; the request succeeds on retry."""
    write_requests(tmp_path / "in.jsonl", 3)
    starts: list[float] = []

    def script(n, body, headers):
        starts.append(clock.now - 0.01)
        if n == 1:
            return status(429, "slow down", {"retry-after-ms": "500"})
        return ok()

    api = FakeAPI(script)
    batch, result = run(run_batch(tmp_path, api, limits=BatchLimits(concurrency=1)))
    assert result.summary.succeeded == 3
    assert (batch.tally.rate_limited, batch.limiter.pushbacks) == (1, 1)
    # The 429 came back at 0.01 s; nothing was sent again before 0.51 s.
    assert starts == pytest.approx([0.0, 0.51, 0.52, 0.53])
    attempts = {r["custom_id"]: r["attempts"] for r in read_results(tmp_path / "out.jsonl")}
    assert attempts == {"req-0": 2, "req-1": 1, "req-2": 1}


_EMPTY = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "2s"}
_RPM = BatchLimits(concurrency=1, requests_per_minute=60_000)


@pytest.mark.parametrize(
    ("limits", "headers", "second_start"),
    [
        # No limits known: "nothing left until the reset" holds the next request.
        (BatchLimits(concurrency=1), _EMPTY, 2.01),
        # Limits set, but the server's size unknown: its word still holds.
        (_RPM, _EMPTY, 2.01),
        # The server's limit is no stricter than ours: our own pacing already covers it.
        (_RPM, {**_EMPTY, "x-ratelimit-limit-requests": "60000"}, 0.01),
        # A stricter server (6,000 a minute, a bucket empty when it saw the first request and
        # full in 2 s): its limit is adopted, and the 10 ms the answer took refilled 30
        # requests (the figure is as of when the request was seen, not when it was answered).
        (_RPM, {**_EMPTY, "x-ratelimit-limit-requests": "6000"}, 0.01),
    ],
)
def test_rate_limit_headers_of_successes_hold_back_what_our_limits_do_not(
    tmp_path: Path, run, clock, limits, headers, second_start
):
    """A 200 saying nothing remains holds the next request unless our own limits cover it."""
    write_requests(tmp_path / "in.jsonl", 2)
    starts: list[float] = []

    def script(n, body, _headers):
        starts.append(clock.now - 0.01)
        return ok(headers=headers)

    api = FakeAPI(script)
    run(run_batch(tmp_path, api, limits=limits))
    assert starts == pytest.approx([0.0, second_start])


def test_client_limits_pace_requests_and_tokens(tmp_path: Path, run, clock):
    """--rpm and --tpm over a known window: no window admits more than its share."""
    (tmp_path / "in.jsonl").write_text(
        "".join(request_line(f"r{i}", cost=30) + "\n" for i in range(10))
    )
    starts: list[float] = []

    def script(n, body, headers):
        starts.append(clock.now - 0.01)
        return ok()

    api = FakeAPI(script)
    limits = BatchLimits(
        concurrency=10, requests_per_minute=600, tokens_per_minute=3600, window_s=1
    )
    batch, _ = run(run_batch(tmp_path, api, limits=limits))
    # 10 requests and 60 tokens per 1 s window: 2 requests of 30 tokens per window.
    for t in starts:
        in_window = [s for s in starts if t <= s < t + 1.0]
        assert len(in_window) <= 2
    assert max(starts) >= 4.0
    assert batch.tally.tokens_sent == 300


def test_invalid_lines_are_written_as_failures_without_spending_the_limits(tmp_path: Path, run):
    """A bad line becomes a failed result at once; only real requests go through the limiter."""
    lines = [request_line("a"), "{not json", request_line("b"), json.dumps({"custom_id": "c"})]
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")
    batch, result = run(run_batch(tmp_path, FakeAPI()))
    records = {r["custom_id"]: r for r in read_results(tmp_path / "out.jsonl")}
    assert set(records) == {"a", "b", "line-2", "c"}
    assert records["line-2"]["error"]["code"] == "invalid_line"
    assert records["line-2"]["error"]["message"].startswith("line 2 is not valid JSON")
    assert records["c"]["error"]["message"].startswith("line 4 is not a request")
    assert batch.limiter.admitted == 2
    assert (result.summary.total, result.summary.failed, batch.tally.invalid) == (4, 2, 2)


def test_an_answer_nested_too_deep_fails_its_item_and_the_run_goes_on(tmp_path: Path, run):
    """A 200 whose JSON nests 100,000 deep: that item fails (answer_too_deep), the others pass."""
    deep = RawAnswer(200, {"content-type": "application/json"}, b"[" * 100_000 + b"]" * 100_000)
    api = FakeAPI(
        lambda n, body, headers: deep if body["messages"][0]["content"] == "hello 0" else ok()
    )
    lines = [request_line("a"), request_line("b").replace("hello 0", "hello 1")]
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")
    _, result = run(run_batch(tmp_path, api, retry=Retry(attempts=2)))
    records = {r["custom_id"]: r for r in read_results(tmp_path / "out.jsonl")}
    assert records["b"]["error"] is None
    error = records["a"]["error"]
    assert error["code"] == "answer_too_deep"
    assert error["message"] == (
        "the answer (HTTP 200) is JSON nested more than 128 deep, the most Conveyor keeps:"
        " it was not kept"
    )
    assert records["a"]["attempts"] == 2
    assert (result.summary.succeeded, result.summary.failed) == (1, 1)


def test_a_non_retryable_answer_fails_at_once_with_the_answer_kept(tmp_path: Path, run):
    """A 400 is not retried; its result keeps the API's answer and message."""
    write_requests(tmp_path / "in.jsonl", 1)
    api = FakeAPI(lambda n, body, headers: status(400, "Unknown model."))
    _, result = run(run_batch(tmp_path, api))
    (record,) = read_results(tmp_path / "out.jsonl")
    assert record["error"] == {"code": "http_400", "message": "HTTP 400: Unknown model."}
    assert record["response"]["status_code"] == 400
    assert (record["attempts"], api.calls, result.summary.failed) == (1, 1, 1)


def test_connection_failures_are_recorded_per_item_and_the_run_goes_on(tmp_path: Path, run):
    """Every item fails with the transport's reason, even those stopped by the open circuit."""
    ids = write_requests(tmp_path / "in.jsonl", 12)
    refused = TransportError("ClientConnectorError: Cannot connect to host api.test:80")
    api = FakeAPI(lambda n, body, headers: refused)
    limits = BatchLimits(concurrency=1)
    _, result = run(run_batch(tmp_path, api, limits=limits, retry=Retry(attempts=1)))
    records = read_results(tmp_path / "out.jsonl")
    assert sorted(r["custom_id"] for r in records) == sorted(ids)
    assert all("Cannot connect to host api.test:80" in r["error"]["message"] for r in records)
    codes = {r["error"]["code"] for r in records}
    assert codes == {"connection_error", "circuit_open"}  # the breaker opened after 5 in a row
    assert result.summary.failed == 12


def test_secrets_are_sent_but_never_written(tmp_path: Path, run):
    """A secret header reaches the API; an answer echoing it is redacted in the results."""
    write_requests(tmp_path / "in.jsonl", 3)
    api = FakeAPI(lambda n, body, headers: ok({"you_sent": headers["Authorization"]}))
    endpoint = Endpoint(base_url="http://api.test", secret_headers=(("Authorization", SECRET),))
    run(run_batch(tmp_path, api, endpoint=endpoint))
    assert all(h["Authorization"] == SECRET for h in api.headers)
    text = (tmp_path / "out.jsonl").read_text()
    assert "sk-test-0123456789abcdef" not in text
    assert text.count('"you_sent":"[redacted]"') == 3
    assert SECRET not in repr(endpoint)


def test_a_secret_cut_short_in_an_error_message_is_still_redacted(tmp_path: Path, run):
    """An echoed secret that the 200-character error message cuts in two leaks no part of it."""
    write_requests(tmp_path / "in.jsonl", 1)
    echo = "x" * 180 + " " + SECRET + " and more text"  # the cut falls inside the token

    def script(n: int, body: Any, headers: Any) -> RawAnswer:
        return RawAnswer(400, {"content-type": "text/plain"}, echo.encode())

    endpoint = Endpoint(base_url="http://api.test", secret_headers=(("Authorization", SECRET),))
    run(run_batch(tmp_path, FakeAPI(script), endpoint=endpoint))
    (record,) = read_results(tmp_path / "out.jsonl")
    assert "sk-test-0" not in json.dumps(record)
    assert record["error"]["message"].startswith("HTTP 400: " + "x" * 180 + " [redacted]")


def test_stop_cancels_in_flight_requests_without_writing_them(tmp_path: Path, run):
    """After stop, in-flight requests are cancelled, not written; a resume completes the rest."""
    ids = write_requests(tmp_path / "in.jsonl", 30)
    slow = FakeAPI(latency_s=lambda n: 1.0 + n / 100)  # one answer at a time
    batch, result = run(run_batch(tmp_path, slow, limits=BatchLimits(concurrency=5), stop_after=7))
    assert result.interrupted
    written = id_counts(tmp_path / "out.jsonl")
    assert len(written) == 7
    assert set(written.values()) == {1}
    # Every request sent and not written was cancelled. The results are written by the loop
    # that reads the stream, after the worker that settled the 7th took its next request: so
    # at most that one started after the stop was asked.
    assert slow.calls - 7 == result.summary.cancelled == batch.tally.cancelled
    assert slow.calls <= 12
    _, resumed = VirtualClock().run(run_batch(tmp_path, FakeAPI()))
    assert resumed.summary.succeeded == 23
    assert id_counts(tmp_path / "out.jsonl") == dict.fromkeys(ids, 1)


def test_stop_before_the_run_starts_sends_nothing(tmp_path: Path, run):
    """A batch stopped before run() returns at once without sending."""
    write_requests(tmp_path / "in.jsonl", 5)
    files = BatchFiles(input=tmp_path / "in.jsonl", output=tmp_path / "out.jsonl")
    plan = prepare(files, Endpoint(base_url="http://api.test"))
    api = FakeAPI()
    batch = Batch(plan, limits=BatchLimits(), retry=Retry(), transport=api)
    batch.stop()
    result = run(batch.run())
    plan.close()
    assert (api.calls, result.interrupted, result.summary.total) == (0, True, 0)


def test_a_write_failure_stops_the_run_and_is_raised(tmp_path: Path, run):
    """If the results file cannot be written, the run stops and OutputError says so."""
    write_requests(tmp_path / "in.jsonl", 20)
    files = BatchFiles(input=tmp_path / "in.jsonl", output=tmp_path / "out.jsonl")
    plan = prepare(files, Endpoint(base_url="http://api.test"))
    plan.results = _FullDisk(plan.results.path, plan.results._fd)
    api = FakeAPI()
    batch = Batch(plan, limits=BatchLimits(concurrency=2), retry=Retry(), transport=api)
    with pytest.raises(OutputError, match="No space left"):
        run(batch.run())
    plan.close()
    assert len(read_results(tmp_path / "out.jsonl")) == 3
    assert api.calls < 10  # stopped soon after the failure


class _FullAtTheEnd(ResultFile):
    """A results file whose every write of the pending results fails (a full disk)."""

    __slots__ = ()

    def flush(self) -> None:
        if self._pending:
            self._pending.clear()
            self._failed = OutputError("writing out.jsonl failed: No space left on device")
        super().flush()


def test_a_failed_write_of_the_last_results_is_raised_by_the_run(tmp_path: Path, run):
    """Results written at the end of the loop's pass: a failure there is the run's OutputError."""
    write_requests(tmp_path / "in.jsonl", 3)
    files = BatchFiles(input=tmp_path / "in.jsonl", output=tmp_path / "out.jsonl")
    plan = prepare(files, Endpoint(base_url="http://api.test"))
    plan.results = _FullAtTheEnd(plan.results.path, plan.results._fd)
    batch = Batch(plan, limits=BatchLimits(concurrency=3), retry=Retry(), transport=FakeAPI())
    with pytest.raises(OutputError, match="No space left"):
        run(batch.run())
    plan.close()  # the failure was said once, by the run: closing does not raise it again
    assert read_results(tmp_path / "out.jsonl") == []


def test_memory_stays_bounded_while_streaming(tmp_path: Path):
    """5,000 requests with 2 KB answers run in a few MB: results are written, not kept.

    5,000 rather than 20,000 lines because tracemalloc slows the run down fourfold; the peak
    does not grow with the number of lines (the 1M-line figure is in the how-to).
    """
    ids = write_requests(tmp_path / "in.jsonl", 5_000)
    answer = ok({"text": "x" * 2_000})
    api = FakeAPI(lambda n, body, headers: answer, latency_s=0.001, record=False)
    tracemalloc.start()
    try:
        _, result = VirtualClock().run(
            run_batch(tmp_path, api, limits=BatchLimits(concurrency=100))
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.summary.succeeded == 5_000
    size = (tmp_path / "out.jsonl").stat().st_size
    assert size > 10_000_000  # what keeping the results would cost, at least
    # Measured 1.0 MB (in-flight answers, the engine's buffer); 2.3 MB for 20,000 lines, the
    # difference being the ids' digests while they are sorted (16-32 bytes per id, plus at
    # most one chunk of 65,536 being sorted, about 3.5 MB). A kept result would cost 2 KB.
    assert peak < 4_000_000, f"peak {peak / 1e6:.1f} MB"
    assert len(id_counts(tmp_path / "out.jsonl")) == len(ids)


def test_retry_failed_reruns_only_the_failed_ones_exactly_once(tmp_path: Path, run):
    """A second run with retry_failed sends only the failed requests; each id ends once."""
    ids = write_requests(tmp_path / "in.jsonl", 10)
    flaky = FakeAPI(lambda n, body, headers: status(400) if n % 3 == 0 else ok())
    _, first = run(run_batch(tmp_path, flaky))
    assert first.summary.failed == 3
    again = FakeAPI()
    _, second = VirtualClock().run(run_batch(tmp_path, again, retry_failed=True))
    assert (again.calls, second.summary.succeeded, second.tally.skipped) == (3, 3, 7)
    assert id_counts(tmp_path / "out.jsonl") == dict.fromkeys(ids, 1)
    assert all(r["error"] is None for r in read_results(tmp_path / "out.jsonl"))


def test_auto_timeout_cuts_a_hung_request_and_retries_it(tmp_path: Path, run):
    """--timeout auto: a request that hangs is cut and retried, and the item succeeds."""
    write_requests(tmp_path / "in.jsonl", 30)

    class Hangs(FakeAPI):
        async def __call__(self, method, url, headers, body):
            if self.calls == 25:  # the 26th call hangs until cut
                self.calls += 1
                await asyncio.sleep(3600)
            return await super().__call__(method, url, headers, body)

    api = Hangs()
    _, result = run(
        run_batch(tmp_path, api, retry=Retry(attempts=3, timeout_s="auto", rng=_Half()))
    )
    assert result.summary.succeeded == 30
    assert result.summary.retries == 1
    assert result.summary.duration_s < 1.0  # cut after 4 x p95 (10 ms), not after an hour


def test_headers_every_request_and_a_lines_own_which_win(tmp_path: Path, run):
    """--header goes with every request; a line's headers win; no body, no Content-Type."""
    lines = [
        request_line("a", headers={"X-Team": "line", "X-Line": "1"}),
        request_line("b", method="GET", body=None),
    ]
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")
    api = FakeAPI()
    endpoint = Endpoint(base_url="http://api.test", headers=(("X-Team", "all"),))
    run(run_batch(tmp_path, api, endpoint=endpoint, limits=BatchLimits(concurrency=1)))
    first, second = api.headers
    assert (first["X-Team"], first["X-Line"], first["Content-Type"]) == (
        "line",
        "1",
        "application/json",
    )
    assert second["X-Team"] == "all"
    assert "Content-Type" not in second
    assert api.bodies == [
        {"model": "mock-1", "messages": [{"role": "user", "content": "hello 0"}]},
        None,
    ]


def _usage_run(
    tmp_path: Path, run, clock, *, used: int, refund: bool, cost: int | None = None
) -> tuple[Batch, float]:
    """Ten chat lines estimated at 60 tokens whose answers say they used `used`."""
    body = {"model": "m", "messages": [{"role": "user", "content": "x" * 40}], "max_tokens": 50}
    extra: dict[str, Any] = {} if cost is None else {"cost": cost}
    (tmp_path / "in.jsonl").write_text(
        "".join(request_line(f"r{i}", body=body, **extra) + "\n" for i in range(10))
    )
    answer = {"usage": {"prompt_tokens": 10, "completion_tokens": used - 10, "total_tokens": used}}
    api = FakeAPI(lambda n, b, h: ok(answer))
    limits = BatchLimits(
        concurrency=10, tokens_per_minute=7200, window_s=1, refund_unused_tokens=refund
    )
    batch, result = run(run_batch(tmp_path, api, limits=limits))
    assert result.summary.succeeded == 10
    return batch, clock.now


def test_usage_above_the_estimate_is_charged(tmp_path: Path, run, clock):
    """An answer that used more tokens than estimated is charged what it used."""
    batch, _ = _usage_run(tmp_path, run, clock, used=100, refund=False)
    assert batch.tally.tokens_sent == 10 * 100
    assert batch.limiter.admitted == 10


def test_usage_below_the_estimate_is_refunded_only_when_asked(tmp_path: Path, run, clock):
    """By default the estimate stands (OpenAI does not refund); refund_unused_tokens gives back."""
    (tmp_path / "kept").mkdir()
    (tmp_path / "refunded").mkdir()
    kept, kept_s = _usage_run(tmp_path / "kept", run, clock, used=20, refund=False)
    assert kept.tally.tokens_sent == 10 * 60
    start = clock.now
    refunded, end = _usage_run(tmp_path / "refunded", run, clock, used=20, refund=True)
    assert refunded.tally.tokens_sent == 10 * 20
    # 120 tokens per window: 2 requests a window at the estimate, 4 once answers refund.
    assert end - start < 0.6 * kept_s


def test_a_lines_own_cost_is_not_replaced_by_usage(tmp_path: Path, run, clock):
    """A line's explicit "cost" is what it is charged, whatever the answer's usage says."""
    batch, _ = _usage_run(tmp_path, run, clock, used=100, refund=True, cost=30)
    assert batch.tally.tokens_sent == 10 * 30


def test_a_lines_header_replaces_the_runs_whatever_its_case(tmp_path: Path, run):
    """A line's `x-team` replaces the run's `X-Team`: one header is sent, not both."""
    (tmp_path / "in.jsonl").write_text(request_line("a", headers={"x-team": "line"}) + "\n")
    api = FakeAPI()
    endpoint = Endpoint(base_url="http://api.test", headers=(("X-Team", "all"),))
    run(run_batch(tmp_path, api, endpoint=endpoint, limits=BatchLimits(concurrency=1)))
    (sent,) = api.headers
    assert [(k, v) for k, v in sent.items() if k.lower() == "x-team"] == [("x-team", "line")]


def test_a_line_that_sets_host_or_forwarding_headers_fails_and_is_not_sent(tmp_path: Path, run):
    """A line choosing its virtual host is its own failure; the other lines still run."""
    lines = [
        request_line("a"),
        request_line("host", headers={"Host": "admin.internal"}),
        request_line("fwd", headers={"x-forwarded-host": "admin.internal"}),
    ]
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")
    api = FakeAPI()
    _, result = run(run_batch(tmp_path, api))
    records = {r["custom_id"]: r for r in read_results(tmp_path / "out.jsonl")}
    assert records["host"]["error"]["code"] == "invalid_line"
    assert records["host"]["error"]["message"].startswith("line 2 has the header Host:")
    assert records["fwd"]["error"]["message"].startswith("line 3 has the header x-forwarded-host:")
    assert records["a"]["error"] is None
    assert len(api.headers) == 1
    assert not {k.lower() for k in api.headers[0]} & {"host", "x-forwarded-host"}
    assert (result.summary.total, result.summary.failed) == (3, 2)
