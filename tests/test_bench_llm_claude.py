"""bench/llm.py's Claude route: the mock charges its work as it claims; its verdicts are right.

The route judges every contender on what the mock charges, so these tests pin down that the
charges are what the route says (input from the text, 7 output tokens an answer, whatever shape
a client gives the body), that the limits make every dimension matter, that the verdicts read
the mock's counters correctly, that Conveyor's three ways answer a small work with no 429, that
the Message Batches driver does what a user's code does, and that the peers' network guard
refuses what is not on the loopback.
"""

import asyncio
import importlib.util
import json
import math
import random
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import anthropic
import httpx2
import pytest

from conveyor.http.request import Request as HttpRequest
from conveyor.http.request import parse_line
from conveyor.mockapi.messages import answer_text, parse_messages

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _package() -> ModuleType:
    """Import bench/llm_claude by its location (bench/ is not on the path: its http.py shadows)."""
    if "llm_claude" not in sys.modules:
        init = BENCH / "llm_claude" / "__init__.py"
        spec = importlib.util.spec_from_file_location(
            "llm_claude", init, submodule_search_locations=[str(init.parent)]
        )
        assert spec is not None
        assert spec.loader is not None
        package = importlib.util.module_from_spec(spec)
        sys.modules["llm_claude"] = package
        spec.loader.exec_module(package)
    return sys.modules["llm_claude"]


_package()
work = importlib.import_module("llm_claude.work")
run = importlib.import_module("llm_claude.run")
peers = importlib.import_module("llm_claude.peers")
contenders = importlib.import_module("llm_claude.contenders")

WORK = work.make_work()


def _charge(body: dict[str, Any]) -> tuple[int, int, str]:
    """Return what the mock charges a body: input tokens, output tokens, stop reason."""
    parsed = parse_messages(json.dumps(body).encode())
    _, output, reason = answer_text(parsed)
    return parsed.input_tokens, output, reason


def test_the_mock_charges_each_request_what_the_work_says():
    """Every request's input is its text / 4 and every answer is a complete 7-token one."""
    for request in WORK:
        expected = (work.input_tokens(request), work.OUTPUT_TOKENS, "end_turn")
        assert _charge(request.body()) == expected


def test_the_charge_does_not_depend_on_the_body_s_shape():
    """Text blocks (LiteLLM's system prompt, a user's content list) cost what strings cost."""
    request = next(r for r in WORK if r.system is not None)
    body = request.body()
    blocks = {
        **body,
        "system": [{"type": "text", "text": request.system}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": request.prompt}]}],
    }
    assert _charge(blocks) == _charge(body)


def test_every_dimension_of_the_limits_matters():
    """Output binds, input and requests come within 15% of it; no input outgrows its bucket."""
    per_s = 60.0
    requests_s = len(WORK) / (work.RPM / per_s)
    input_s = sum(work.input_tokens(r) for r in WORK) / (work.ITPM / per_s)
    output_s = len(WORK) * work.OUTPUT_TOKENS / (work.OTPM / per_s)
    assert output_s > input_s > requests_s >= 0.85 * output_s
    assert work.ideal_s(WORK) == pytest.approx(output_s + work.LATENCY_MS / 1000)
    assert max(work.input_tokens(r) for r in WORK) < work.ITPM / per_s * work.BURST_S
    assert 20 <= work.ideal_s(WORK) <= 40
    assert sum(r.system is not None for r in WORK) == len(WORK) // 3
    assert len({r.max_tokens for r in WORK}) > 1


def _stats(**overrides: Any) -> dict[str, Any]:
    """Return the mock's counters of a run that answered the whole work once, no refusal."""
    inputs = sum(work.input_tokens(r) for r in WORK)
    outputs = work.OUTPUT_TOKENS * len(WORK)
    stats = {
        "active_s": work.ideal_s(WORK),
        "rate_limited": 0,
        "overloaded": 0,
        "requests": len(WORK),
        "ok": len(WORK),
        "spent_tokens": inputs + outputs,
        "messages_output_tokens": outputs,
    }
    return stats | overrides


def test_the_targets_read_the_mock_s_counters():
    """One 429, or a run 12% slower than the ideal, fails; a clean run at the ideal passes."""
    clean = run.Row(contender="conveyor run", ok=len(WORK), stats=_stats())
    assert {v for v, _ in run.checks([clean], WORK)} == {"PASS"}
    slow = run.Row(
        contender="conveyor run",
        ok=len(WORK),
        stats=_stats(active_s=work.ideal_s(WORK) * 1.12, rate_limited=1),
    )
    failed = [text for v, text in run.checks([slow], WORK) if v == "FAIL"]
    assert len(failed) == 2
    assert "429s = 1" in failed[0]
    assert "0.893 of the ideal" in failed[1]


def test_a_stub_is_pending_and_a_different_charge_fails():
    """A way not built yet is PENDING (not PASS); a contender charged other tokens FAILs."""
    pending = run.Row(contender="conveyor limit_anthropic", ok=None, note="x", available=False)
    more = _stats(spent_tokens=_stats()["spent_tokens"] + 50)
    padded = run.Row(contender="peer", ok=len(WORK), stats=more)
    verdicts = run.checks([pending, padded], WORK)
    assert [v for v, _ in verdicts] == ["PENDING", "FAIL"]
    assert "charged 110,600 input" in verdicts[1][1]
    assert run.table([pending], 1.0)[1].endswith("not available yet")


@pytest.mark.parametrize("name", [name for name, _ in run.CONVEYOR])
def test_each_conveyor_way_answers_a_small_work_without_a_429(tmp_path, name):
    """conveyor run, limit_anthropic and the Message Batches API each answer 24 requests.

    Against the route's own mock (its buckets, 3% 529s, 400 ms answers), in-process; real
    time, about a second each: the first answers teach the output reservation, the 529s are
    retried, and every request is answered once, with no 429.
    """
    from conveyor.mockapi import MockAPI

    contender = dict(run.CONVEYOR)[name]

    async def main() -> tuple[int, Any]:
        async with MockAPI(run.mock_config()) as mock:
            answered = await contender(mock.base_url, WORK[:24], tmp_path)
            return answered, mock.stats()

    answered, stats = asyncio.run(main())
    assert answered == 24
    assert stats.rate_limited == 0
    assert stats.ok == 24


def test_conveyor_run_keeps_the_route_s_buckets_on_virtual_time(tmp_path):
    """The whole work through conveyor run's runner, replayed against the mock's own buckets.

    On virtual time, with the route's limits, 3% 529s and 400 ms answers (the mock's bucket
    arithmetic, `MessagesLimiter`, judging each request as it arrives): no 429, every request
    answered, within 3% of the ideal. The calls that queue at the start reserve the output
    the first answers taught (a few tokens), not their max_tokens: reserving the bound ran
    this at 0.80 of the ideal (0.41 on the first 120 requests).
    """
    from conveyor.http import Batch, BatchFiles, BatchLimits, Endpoint, RawAnswer, prepare
    from conveyor.mockapi.bucket import MessagesLimiter
    from conveyor.testing import VirtualClock

    clock = VirtualClock()
    api = MessagesLimiter(rpm=work.RPM, itpm=work.ITPM, otpm=work.OTPM, burst_s=work.BURST_S)
    draws = random.Random(5)
    refused: list[float] = []

    def error(status: int, kind: str, headers: dict[str, str]) -> RawAnswer:
        body = json.dumps({"type": "error", "error": {"type": kind, "message": kind}})
        return RawAnswer(status, {"content-type": "application/json", **headers}, body.encode())

    async def mock(method: str, url: str, headers: Any, body: bytes | None) -> RawAnswer:
        assert body is not None
        parsed = parse_messages(body)
        decision = api.try_admit(clock.now, input_tokens=parsed.input_tokens)
        if not decision.admitted:
            refused.append(clock.now)
            wait = str(max(1, math.ceil(decision.retry_after_s)))
            return error(429, "rate_limit_error", {"retry-after": wait})
        if draws.random() < work.OVERLOADED:
            return error(529, "overloaded_error", {})
        await asyncio.sleep(work.LATENCY_MS / 1000)
        text, output, stop = answer_text(parsed)
        api.settle_output(clock.now, output_tokens=output)
        usage = {"input_tokens": parsed.input_tokens, "output_tokens": output}
        message = {"type": "message", "role": "assistant", "stop_reason": stop, "usage": usage,
                   "content": [{"type": "text", "text": text}]}  # fmt: skip
        return RawAnswer(200, {"content-type": "application/json"}, json.dumps(message).encode())

    files = BatchFiles(
        input=contenders.write_lines(WORK, tmp_path / "in.jsonl"), output=tmp_path / "out.jsonl"
    )
    plan = prepare(files, Endpoint(base_url="https://api.anthropic.com"))
    limits = BatchLimits(
        concurrency=work.CONCURRENCY,
        requests_per_minute=work.RPM,
        input_tokens_per_minute=work.ITPM,
        output_tokens_per_minute=work.OTPM,
        bucket_s=work.BURST_S,
    )
    try:
        result = clock.run(Batch(plan, limits=limits, retry=contenders.RETRY, transport=mock).run())
    finally:
        plan.close()
    assert refused == []
    assert result.summary.succeeded == len(WORK)
    assert work.ideal_s(WORK) / clock.now >= 0.97


def test_the_conveyor_run_lines_are_valid_requests_to_the_messages_route(tmp_path):
    """Each written line reads, for conveyor run, as a POST to the mock's /v1/messages."""
    path = contenders.write_lines(WORK, tmp_path / "claude.jsonl")
    lines = path.read_bytes().splitlines()
    assert len(lines) == len(WORK)
    for number, (raw, request) in enumerate(zip(lines, WORK, strict=True), start=1):
        parsed = parse_line(raw, number, base_url="http://127.0.0.1:9")
        assert isinstance(parsed, HttpRequest), parsed
        assert (parsed.custom_id, parsed.method) == (request.custom_id, "POST")
        assert parsed.url == "http://127.0.0.1:9/v1/messages"
        assert json.loads(raw)["body"] == request.body()


def test_the_shared_limiter_has_the_mock_s_shape():
    """The Conveyor ways' limiter holds the mock's requests, input and output limits."""
    config = contenders.claude_limiter().config
    limits = {rate.unit: (rate.limit, rate.per) for rate in config.rates}
    assert limits == {
        "requests": (work.RPM, "minute"),
        "input_tokens": (work.ITPM, "minute"),
        "output_tokens": (work.OTPM, "minute"),
    }
    assert config.bucket_s == work.BURST_S


def test_drive_message_batches_creates_polls_and_counts_succeeded_results():
    """The driver sends the work as one batch, polls until it ends, counts only successes."""
    sent: list[Any] = []
    polls = iter(["in_progress", "in_progress", "ended"])

    def batch(status: str) -> dict[str, Any]:
        return {
            "id": "msgbatch_1",
            "type": "message_batch",
            "processing_status": status,
            "request_counts": {"processing": 0, "succeeded": 2, "errored": 1, "canceled": 0,
                               "expired": 0},
            "created_at": "2025-01-01T00:00:00Z",
            "expires_at": "2025-01-02T00:00:00Z",
            "results_url": "http://localhost/v1/messages/batches/msgbatch_1/results"
            if status == "ended" else None,
        }  # fmt: skip

    def handler(request: httpx2.Request) -> httpx2.Response:
        path = request.url.path
        if request.method == "POST" and path == "/v1/messages/batches":
            sent.extend(json.loads(request.content)["requests"])
            return httpx2.Response(200, json=batch("in_progress"))
        if path == "/v1/messages/batches/msgbatch_1":
            return httpx2.Response(200, json=batch(next(polls, "ended")))
        if path == "/v1/messages/batches/msgbatch_1/results":
            errored = {"type": "errored", "error": {"type": "error",
                       "error": {"type": "api_error", "message": "upstream 500"}}}  # fmt: skip
            results = [
                {"custom_id": r["custom_id"], "result": errored if i == 1 else {
                    "type": "succeeded", "message": {"id": f"msg_{i}", "type": "message"}}}
                for i, r in enumerate(sent)
            ]  # fmt: skip
            return httpx2.Response(200, text="".join(json.dumps(x) + "\n" for x in results))
        return httpx2.Response(404, json={"type": "error", "error": {"type": "not_found_error"}})

    async def drive() -> int:
        http = httpx2.AsyncClient(transport=httpx2.MockTransport(handler))
        async with anthropic.AsyncAnthropic(
            api_key="unused", base_url="http://localhost", http_client=http
        ) as client:
            return int(await contenders.drive_message_batches(client, WORK[:3], poll_s=0))

    assert asyncio.run(drive()) == 2
    assert sent == [r.batch_request() for r in WORK[:3]]


def test_the_peers_guard_refuses_and_lists_what_is_not_on_the_loopback(tmp_path):
    """A peer's lookup or connection beyond 127.0.0.1 fails at once and is reported at exit.

    0.0.0.0 is refused by the guard's rule (not 127.0.0.1, ::1 or localhost) yet, were the guard
    broken, would only reach this machine: the test sends nothing anywhere else.
    """
    path = peers.write_work(WORK[:2], tmp_path / "work.jsonl")
    script = (
        "import socket\n"
        "for attempt in (lambda: socket.getaddrinfo('0.0.0.0', 9),\n"
        "                lambda: socket.socket().connect(('0.0.0.0', 9))):\n"
        "    try:\n"
        "        attempt()\n"
        "    except OSError as exc:\n"
        "        print('refused', type(exc).__name__)\n"
        "print('rows', len(rows), rows[0]['custom_id'])\n"
    )
    args = ["http://127.0.0.1:9", str(path), "1", "1", "1", "1", "m"]
    proc = subprocess.run(
        [sys.executable, "-c", peers.PRELUDE + script, *args],
        capture_output=True, text=True, check=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert proc.stdout.splitlines() == [
        "refused gaierror",
        "refused ConnectionRefusedError",
        "rows 2 msg-0",
        "PEER_BLOCKED connect 0.0.0.0:9",
        "PEER_BLOCKED resolve 0.0.0.0",
    ]
