"""``conveyor serve`` through a store outage: its worker lives on, and it says the store is down.

The interface these tests expect (written before the service's outage handling; match it):

- ``GET /healthz``, no API key needed, answers JSON (``application/json``)::

      200 {"status": "ok",
           "store": {"ok": true, "error": null},
           "redis": {"ok": true, "error": null},   # null when no Redis is configured
           "worker": {"alive": true, "restarts": 0, "error": null}}  # null: --no-worker

  While the store is unreachable: 503, ``"status": "down"``, ``"store": {"ok": false,
  "error": "<one line, no password>"}``. Redis unreachable alone: 200, ``"status":
  "degraded"``, ``"redis": {"ok": false, "error": "<one line>"}``.
- Every other route of the API answers 503 ``application/problem+json`` whose ``type`` ends
  with ``store-unavailable`` while the store is unreachable (never a 500).
- ``conveyor serve --wait-for-store`` started while its store is unreachable starts anyway
  (a service restarted before its database must not crash-loop), answers 503 as above, and
  recovers when the store comes back. Without the flag it refuses to start, in one line
  (``tests/jobs/test_cli_day_one.py``): a wrong URL is said at once.
- ``conveyor serve --limits redis://...`` holds the app's limiters in Redis, as
  ``conveyor worker --limits`` does (what ``"redis"`` in ``/healthz`` reports on).

The store URL carries a password (PostgreSQL's trust authentication ignores it): it must not
appear in any answer or in the service's output.

Real processes and real time (a real server going away), every wait bounded.
"""

from __future__ import annotations

import threading
import uuid
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from ..services import POSTGRES_URL, free_port, redis_url
from .harness import Proc, env, hold, wait_until
from .proxy import Proxy

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.faults

PASSWORD = "s3cret-pw"  # noqa: S105 - a fake one: it must never be shown
OK_STORE = {"ok": True, "error": None}


def _with_password(url: str) -> str:
    scheme, _, rest = url.partition("://")
    user, _, host = rest.rpartition("@")
    return f"{scheme}://{user or 'postgres'}:{PASSWORD}@{host}"


class Served:
    """A ``conveyor serve`` process with the fault app, through a proxy to PostgreSQL."""

    def __init__(self, store: str, folder: Path, *more: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        config = folder / "conveyor.toml"
        config.write_text(f'files_dir = "{folder / "files"}"\nkeys_file = "{folder / "k.json"}"\n')
        args = [
            "serve", "--app", "tests.faults.fault_app:app", "--store", store,
            "--port", str(self.port), "--config", str(config), "--lease-s", "2",
            "--grace-s", "2", *more,
        ]  # fmt: skip
        environ = env(folder / "runs.txt", f"faults-{uuid.uuid4().hex[:8]}")
        self.proc = Proc("serve", args, environ, folder)
        self.http = httpx.Client(base_url=self.base, timeout=10)

    def get(self, path: str) -> httpx.Response:
        return self.http.get(path)

    def post(self, path: str, body: object) -> httpx.Response:
        return self.http.post(path, json=body)

    def up(self) -> bool:
        try:
            self.get("/v1/service")
        except httpx.TransportError:
            return False
        return True

    def wait_up(self) -> None:
        wait_until("the service answers", self.up, deadline_s=30, alive=[self.proc])

    def submit(self, n: int) -> str:
        answer = self.post("/v1/jobs", {"task": "work", "items": list(range(n))})
        assert answer.status_code == 202, answer.text
        return str(answer.json()["id"])

    def status(self, job_id: str) -> str:
        answer = self.get(f"/v1/jobs/{job_id}")
        return str(answer.json().get("status")) if answer.status_code == 200 else ""

    def wait_completed(self, job_id: str, after: str) -> None:
        wait_until(
            f"job {job_id} completed {after} (still {self.status(job_id) or 'unreadable'}:"
            " is the in-process worker dead?)",
            lambda: self.status(job_id) == "completed",
            deadline_s=30,
            alive=[self.proc],
        )

    def close(self) -> str:
        """Stop the service; everything it printed."""
        self.http.close()
        self.proc.stop()
        return self.proc.output()


@pytest.fixture
def to_pg(pg: str) -> Iterator[Proxy]:
    with Proxy.to(POSTGRES_URL) as proxy:
        yield proxy


@pytest.fixture
def served(pg: str, to_pg: Proxy, tmp_path: Path) -> Iterator[Served]:
    """A service on the test's schema through `to_pg`, up, with an in-process worker."""
    service = Served(to_pg.url(_with_password(pg)), tmp_path)
    try:
        service.wait_up()
        yield service
    finally:
        service.http.close()
        service.proc.kill()


def _json(answer: httpx.Response) -> dict[str, Any]:
    assert answer.headers["content-type"].startswith("application/json"), answer.text
    body = answer.json()
    assert isinstance(body, dict)
    return body


def _assert_store_down(answer: httpx.Response) -> None:
    assert answer.status_code == 503, answer.text
    body = _json(answer)
    assert body["status"] == "down"
    assert body["store"]["ok"] is False
    error = body["store"]["error"]
    assert isinstance(error, str)
    assert error.strip()
    assert "\n" not in error
    assert PASSWORD not in answer.text


def _assert_store_unavailable(answer: httpx.Response) -> None:
    assert answer.status_code == 503, f"{answer.status_code}: {answer.text}"
    assert answer.headers["content-type"].startswith("application/problem+json")
    body = answer.json()
    assert body["status"] == 503
    assert str(body["type"]).endswith("store-unavailable"), body
    assert body["detail"]
    assert PASSWORD not in answer.text


@pytest.mark.timeout(90)
def test_the_in_process_worker_survives_a_3s_store_cut_and_runs_the_next_job(served, to_pg):
    """After a 3 s cut of its store, a job posted to the service still completes.

    (Before, the in-process worker died at the cut, silently: new jobs stayed queued.) What
    the service printed, the outage included, carries no password.
    """
    served.wait_completed(served.submit(20), after="before the cut")
    to_pg.cut()
    hold(3, [served.proc], "during a 3 s store cut")
    to_pg.restore()
    served.wait_up()
    served.wait_completed(served.submit(20), after="after a 3 s store cut")
    served.proc.assert_alive("after the job")
    assert PASSWORD not in served.close()  # not in the outage's log lines either


@pytest.mark.timeout(90)
def test_healthz_answers_503_down_while_the_store_is_cut_and_200_ok_after(served, to_pg):
    """`/healthz`: 200 ok, then 503 down with the store's error during a cut, then ok again."""
    assert _json(served.get("/healthz")) == {
        "status": "ok",
        "store": OK_STORE,
        "redis": None,
        "worker": {"alive": True, "restarts": 0, "error": None},
    }
    to_pg.cut()
    wait_until(  # at once, or after a probe of the store's: bounded either way
        "/healthz answers 503 during the cut",
        lambda: served.get("/healthz").status_code == 503,
        deadline_s=10,
        alive=[served.proc],
    )
    _assert_store_down(served.get("/healthz"))
    hold(1, [served.proc], "during a store cut")
    _assert_store_down(served.get("/healthz"))
    to_pg.restore()
    wait_until(
        "/healthz says ok again",
        lambda: served.get("/healthz").status_code == 200,
        deadline_s=30,
        alive=[served.proc],
    )
    after = _json(served.get("/healthz"))
    assert (after["status"], after["store"], after["redis"]) == ("ok", OK_STORE, None)
    assert after["worker"]["alive"] is True  # survived the cut, or restarted


@pytest.mark.timeout(90)
def test_the_api_answers_503_problem_json_while_the_store_is_cut(served, to_pg):
    """List, read and submit answer 503 store-unavailable during a cut, never a 500."""
    job_id = served.submit(5)
    served.wait_completed(job_id, after="before the cut")
    to_pg.cut()
    _assert_store_unavailable(served.get("/v1/jobs"))
    _assert_store_unavailable(served.get(f"/v1/jobs/{job_id}"))
    _assert_store_unavailable(served.post("/v1/jobs", {"task": "work", "items": [1]}))
    to_pg.restore()
    wait_until(
        "the API answers again",
        lambda: served.get("/v1/jobs").status_code == 200,
        deadline_s=30,
        alive=[served.proc],
    )


@pytest.mark.timeout(90)
def test_serve_on_an_unreachable_store_starts_reports_it_and_recovers(pg, to_pg, tmp_path):
    """Started while the store is refused: it serves 503s, then works once the store is back."""
    to_pg.cut()
    service = Served(to_pg.url(_with_password(pg)), tmp_path, "--wait-for-store")
    try:
        service.wait_up()
        _assert_store_down(service.get("/healthz"))
        _assert_store_unavailable(service.get("/v1/jobs"))
        hold(1, [service.proc], "while its store is unreachable")
        to_pg.restore()
        wait_until(
            "/healthz says ok once the store is back",
            lambda: service.get("/healthz").status_code == 200,
            deadline_s=30,
            alive=[service.proc],
        )
        service.wait_completed(service.submit(10), after="once the store was back")
        output = service.close()
    finally:
        service.http.close()
        service.proc.kill()
    assert PASSWORD not in output


@pytest.mark.timeout(60)
def test_healthz_without_a_worker_reports_worker_null(pg, tmp_path):
    """With --no-worker, `/healthz` reports ``"worker": null`` (and the store ok)."""
    service = Served(pg, tmp_path, "--no-worker")
    try:
        service.wait_up()
        assert _json(service.get("/healthz")) == {
            "status": "ok",
            "store": OK_STORE,
            "redis": None,
            "worker": None,
        }
    finally:
        service.close()


@pytest.mark.timeout(60)
def test_healthz_is_degraded_while_redis_is_cut(pg, tmp_path):
    """Redis (`--limits`) cut, store fine: 200 degraded naming Redis; ok again once restored."""
    with Proxy.to(redis_url()) as to_redis:
        service = Served(pg, tmp_path, "--limits", to_redis.url(redis_url()))
        try:
            service.wait_up()
            assert _json(service.get("/healthz"))["redis"] == OK_STORE
            to_redis.cut()
            wait_until(
                "/healthz says degraded during the Redis cut",
                lambda: _json(service.get("/healthz"))["status"] != "ok",
                deadline_s=10,
                alive=[service.proc],
            )
            answer = service.get("/healthz")
            assert answer.status_code == 200, answer.text
            body = _json(answer)
            assert (body["status"], body["store"]) == ("degraded", OK_STORE)
            assert body["redis"]["ok"] is False
            assert isinstance(body["redis"]["error"], str)
            assert "\n" not in body["redis"]["error"]
            to_redis.restore()
            wait_until(
                "/healthz says ok once Redis is back",
                lambda: _json(service.get("/healthz"))["status"] == "ok",
                deadline_s=30,
                alive=[service.proc],
            )
        finally:
            service.close()


def _follow(base: str, path: str, lines: list[str], ended: list[str]) -> None:
    """Read an event stream into `lines`; `ended` gets "end", or the error that broke it."""
    try:
        with httpx.stream("GET", base + path, timeout=30) as answer:
            lines.extend(answer.iter_lines())  # appended one by one, as they come
        ended.append("end")
    except httpx.HTTPError as exc:
        ended.append(repr(exc))


@pytest.mark.timeout(90)
def test_the_job_list_stream_lives_through_a_store_cut_and_shows_jobs_made_after(served, to_pg):
    """`GET /v1/events` through a 3 s cut: not broken off (it was, with two tracebacks logged).

    It keeps its last list during the cut, shows a job submitted once the store is back, and
    ends as a stream ends when the service stops; the log says the wait in one line.
    """
    served.wait_completed(served.submit(5), after="before the cut")
    lines: list[str] = []
    ended: list[str] = []
    reader = threading.Thread(target=_follow, args=(served.base, "/v1/events", lines, ended))
    reader.start()
    wait_until("the list's first event", lambda: "event: jobs" in lines, 10, [served.proc])
    to_pg.cut()
    hold(3, [served.proc], "during a 3 s store cut")
    to_pg.restore()
    wait_until(
        "the API answers again",
        lambda: served.get("/v1/jobs").status_code == 200,
        deadline_s=30,
        alive=[served.proc],
    )
    after = served.submit(3)
    wait_until(
        "the list's stream shows the job submitted after the cut (or is broken off)",
        lambda: bool(ended) or any(after in line for line in lines),
        deadline_s=30,
        alive=[served.proc],
    )
    assert ended == [], ended  # not broken off by the cut
    output = served.close()  # SIGTERM: the stream ends
    reader.join(30)
    assert ended == ["end"], ended
    assert "Exception in ASGI application" not in output
    assert "GET /v1/events failed" not in output
    assert output.count("the job list's stream waits") == 1
    assert PASSWORD not in output


@pytest.mark.timeout(90)
def test_a_store_cut_leaves_no_traceback_in_the_services_log(served, to_pg):
    """A 4 s cut is an outage, not a bug: the log has lines about it, and no traceback.

    (Before, asyncpg's pool logged each failed refill of its connections with a traceback.)
    """
    served.wait_completed(served.submit(5), after="before the cut")
    to_pg.cut()
    hold(4, [served.proc], "during a 4 s store cut")
    to_pg.restore()
    served.wait_up()
    served.wait_completed(served.submit(5), after="after the cut")
    output = served.close()
    assert "is unavailable" in output  # the outage was seen and said
    assert "Traceback" not in output, output
    assert PASSWORD not in output
