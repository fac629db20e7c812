"""Which client a run sends through: pyreqwest for paced limits, aiohttp where timing needs it."""

import contextlib

import pytest

from conveyor.http import BatchLimits
from conveyor.http.batch import _open_transport
from conveyor.http.client import AiohttpTransport
from conveyor.http.reqwest import ReqwestTransport

pytest.importorskip("pyreqwest")


@pytest.mark.parametrize(
    ("limits", "kind"),
    [
        (BatchLimits(concurrency=5), ReqwestTransport),
        (BatchLimits(concurrency=5, requests_per_minute=60), ReqwestTransport),
        (BatchLimits(concurrency=5, requests_per_minute=60, window_s=1.0), AiohttpTransport),
        (BatchLimits(concurrency=5, requests_per_minute=60, bucket_s=1.0), AiohttpTransport),
    ],
    ids=["no-limit", "paced", "window", "bucket"],
)
def test_a_run_uses_pyreqwest_unless_its_limits_need_send_times(run, limits, kind) -> None:
    """A window or a bucket reads when headers leave (aiohttp's trace); paced runs need not."""

    async def main() -> object:
        async with contextlib.AsyncExitStack() as stack:
            return await _open_transport(limits, stack)

    assert isinstance(run(main()), kind)
