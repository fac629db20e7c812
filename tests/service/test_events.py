"""The event stream over a real socket.

Progress as it happens, resumable, ending with the

final state. Real time: the stream is HTTP chunks from uvicorn; the jobs take about 0.5 s.
"""

import json
from typing import Any

import httpx

from .conftest import LiveServer


def _events(response: httpx.Response) -> list[tuple[str, str, Any]]:
    out = []
    for block in response.text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "data" in fields:
            out.append((fields.get("id", ""), fields["event"], json.loads(fields["data"])))
    return out


def test_the_stream_shows_progress_and_ends_with_the_final_state(live: LiveServer):
    """Events carry growing versions and counts, and the last is `done` with the final job."""
    with httpx.Client(base_url=live.url, timeout=10) as c:
        items = [{"n": i, "s": 0.02} for i in range(40)]
        job = c.post(
            "/v1/jobs", json={"task": "slow", "items": items, "options": {"concurrency": 2}}
        ).json()
        with c.stream("GET", f"/v1/jobs/{job['id']}/events") as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            r.read()
        events = _events(r)
    names = [name for _, name, _ in events]
    assert names[-1] == "done"
    assert set(names[:-1]) <= {"progress"}
    assert len(events) >= 3  # 40 items of 20 ms at concurrency 2 take 0.4 s: several updates
    versions = [int(i) for i, _, _ in events]
    assert versions == sorted(versions)
    settled = [e["counts"]["succeeded"] for _, _, e in events]
    assert settled == sorted(settled)
    assert events[-1][2]["status"] == "completed"
    assert events[-1][2]["counts"]["succeeded"] == 40


def test_a_stream_resumed_with_last_event_id_skips_what_was_seen(live: LiveServer):
    """Reconnecting with the last id seen of a finished job sends just the final state again."""
    with httpx.Client(base_url=live.url, timeout=10) as c:
        job = c.post("/v1/jobs", json={"task": "echo", "items": [1, 2]}).json()
        first = _events(c.get(f"/v1/jobs/{job['id']}/events"))
        last_id = first[-1][0]
        again = _events(c.get(f"/v1/jobs/{job['id']}/events", headers={"Last-Event-ID": last_id}))
    assert [(i, name) for i, name, _ in again] == [(last_id, "done")]
    assert again[0][2]["status"] == "completed"


def test_a_cancelled_job_ends_its_stream_with_the_cancelled_state(live: LiveServer):
    """Cancelling while streaming: the stream ends with a `done` event whose status is cancelled."""
    with httpx.Client(base_url=live.url, timeout=10) as c:
        items = [{"n": i, "s": 0.05} for i in range(200)]
        job = c.post("/v1/jobs", json={"task": "slow", "items": items}).json()
        with c.stream("GET", f"/v1/jobs/{job['id']}/events") as r:
            seen = []
            for line in r.iter_lines():
                if line.startswith("data: "):
                    seen.append(json.loads(line[6:]))
                    if len(seen) == 2:
                        assert c.post(f"/v1/jobs/{job['id']}/cancel").status_code == 202
    assert seen[-1]["status"] == "cancelled"
    assert seen[-1]["counts"]["cancelled"] > 0
