"""An upload to ``conveyor serve`` while PostgreSQL is cut: a clear 503, and no half file seen.

The service writes an upload to the store a chunk (1 MiB) at a time and makes it visible in
one last step. Here the proxy between the service and PostgreSQL is cut once the first chunk
is in the store (read straight from PostgreSQL, never through the proxy), and the body goes on:
the next chunk cannot be written, and the answer is the store's 503 problem+json. Once the
store is back, no reader finds any of it; the sweep removes what was written after an hour
idle (`tests/service/test_files.py`).

Real processes and real time (a real server and a real cut), every wait bounded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest

from ..services import POSTGRES_URL
from .harness import sql, wait_until
from .proxy import Proxy
from .test_service import PASSWORD, Served, _assert_store_unavailable, _with_password

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.faults

MIB = 1 << 20
LINE = b'{"text": "' + b"z" * 1000 + b'"}\n'


def _uploads(pg: str) -> list[tuple[object, ...]]:
    return sql(pg, "SELECT id, state, chunks FROM conveyor_files ORDER BY created_at")


@pytest.mark.timeout(90)
def test_a_store_cut_mid_upload_is_a_503_and_leaves_no_file_to_see(pg: str, tmp_path: Path) -> None:
    """Cut after the first chunk is stored: 503 store-unavailable; after, nothing is listed."""
    with Proxy.to(POSTGRES_URL) as to_pg:
        served = Served(to_pg.url(_with_password(pg)), tmp_path)
        try:
            served.wait_up()
            _cut_mid_upload(pg, served, to_pg)
        finally:
            served.http.close()
            served.proc.kill()


def _cut_mid_upload(pg: str, served: Served, to_pg: Proxy) -> None:
    served.wait_completed(served.submit(3), after="before the upload")  # the store works

    def body() -> Iterator[bytes]:
        for _ in range(int(1.5 * MIB) // (len(LINE) * 64)):
            yield LINE * 64
        wait_until(
            "the upload's first chunk in the store",
            lambda: any(row[2] for row in _uploads(pg)),
            deadline_s=20,
            alive=[served.proc],
        )
        to_pg.cut()
        for _ in range(MIB // (len(LINE) * 64)):
            yield LINE * 64

    answer = httpx.post(f"{served.base}/v1/files", content=body(), timeout=30)
    _assert_store_unavailable(answer)
    [(file_id, state, chunks)] = _uploads(pg)
    assert (state, chunks) == ("uploading", 1)  # what was written stays unseen
    to_pg.restore()
    wait_until(
        "the API answers again",
        lambda: served.get("/v1/files").status_code == 200,
        deadline_s=30,
        alive=[served.proc],
    )
    assert served.get("/v1/files").json()["data"] == []
    assert served.get(f"/v1/files/{file_id}").status_code == 404
    assert served.get(f"/v1/files/{file_id}/content").status_code == 404
    job = served.post("/v1/jobs", {"task": "work", "file_id": file_id})
    assert job.status_code == 422, job.text
    again = httpx.post(f"{served.base}/v1/files", content=LINE * 10, timeout=30)
    assert again.status_code == 201, again.text  # uploads work again
    output = served.close()
    assert "Traceback" not in output, output
    assert PASSWORD not in output
