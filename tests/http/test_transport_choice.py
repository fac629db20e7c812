"""Which client a run sends through: Conveyor's own HTTP/1.1 transport by default; any passed.

`Http1Transport` is the default for every run (it dates a window's admissions and teaches a
bucket how late calls leave, when the run's limits need it; it costs a third of aiohttp's CPU
per request with no added latency: docs/decisions.md).
`ReqwestTransport` stays a transport a run may be given (``transport=``): the end-to-end tests
below run it against the mock API on 127.0.0.1, in real time, each answer immediate.
"""

import asyncio
import contextlib
import socket
from pathlib import Path

import pytest

from conveyor import Retry
from conveyor.http import Batch, BatchFiles, BatchLimits, Endpoint, prepare
from conveyor.http.batch import _open_transport
from conveyor.http.http1 import Http1Transport
from conveyor.http.setup import CONNECT_TIMEOUT_S
from conveyor.mockapi import Faults, MockAPI, MockConfig

from .helpers import id_counts, read_results, write_requests


@pytest.mark.parametrize(
    "limits",
    [
        BatchLimits(concurrency=5),
        BatchLimits(concurrency=5, requests_per_minute=60),
        BatchLimits(concurrency=5, requests_per_minute=60, window_s=1.0),
        BatchLimits(concurrency=5, requests_per_minute=60, bucket_s=1.0),
    ],
    ids=["no-limit", "paced", "window", "bucket"],
)
def test_a_run_sends_through_its_own_transport_dated_when_shaped(run, limits) -> None:
    """Whatever the limits, the run's transport is `Http1Transport`; a window or bucket dates."""

    async def main() -> object:
        async with contextlib.AsyncExitStack() as stack:
            return await _open_transport(limits, stack)

    transport = run(main())
    assert isinstance(transport, Http1Transport)
    shaped = limits.window_s is not None or limits.bucket_s is not None
    assert transport._dated is shaped


async def _run_with_reqwest(tmp_path: Path, base_url: str, retry: Retry) -> object:
    from conveyor.http.reqwest import ReqwestTransport, open_client

    files = BatchFiles(input=tmp_path / "in.jsonl", output=tmp_path / "out.jsonl")
    plan = prepare(files, Endpoint(base_url=base_url))
    try:
        async with open_client(10, connect_timeout_s=CONNECT_TIMEOUT_S) as client:
            batch = Batch(
                plan,
                limits=BatchLimits(concurrency=10),
                retry=retry,
                transport=ReqwestTransport(client),
            )
            return await batch.run()
    finally:
        plan.close()


def test_a_run_given_pyreqwest_settles_every_request_through_it(tmp_path: Path) -> None:
    """Answers, 500s and dropped connections through pyreqwest: all retried, each written once."""
    pytest.importorskip("pyreqwest")
    ids = write_requests(tmp_path / "in.jsonl", 40)
    config = MockConfig(latency_ms=0, faults=Faults(fail_rate=0.15, drop_rate=0.15), seed=3)

    async def main() -> None:
        async with MockAPI(config) as api:
            result = await _run_with_reqwest(
                tmp_path, api.base_url, Retry(attempts=10, base_delay_s=0.001)
            )
            stats = api.stats()
        assert stats.errors_500 > 0
        assert stats.dropped > 0
        assert result.summary.succeeded == 40  # type: ignore[attr-defined]

    asyncio.run(main())
    assert id_counts(tmp_path / "out.jsonl") == dict.fromkeys(ids, 1)
    record = read_results(tmp_path / "out.jsonl")[0]
    assert record["response"]["body"]["object"] == "chat.completion"


def test_pyreqwest_names_the_host_it_could_not_reach(tmp_path: Path) -> None:
    """Nothing listening: each item fails with "Cannot connect to host", as through aiohttp."""
    pytest.importorskip("pyreqwest")
    write_requests(tmp_path / "in.jsonl", 4)
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = asyncio.run(_run_with_reqwest(tmp_path, f"http://127.0.0.1:{port}", Retry(attempts=1)))
    assert result.summary.failed == 4  # type: ignore[attr-defined]
    for record in read_results(tmp_path / "out.jsonl"):
        assert f"Cannot connect to host 127.0.0.1:{port}" in record["error"]["message"]
