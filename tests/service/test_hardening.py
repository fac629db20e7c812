"""Regressions from the service audit: keys fail closed, bounded numbers, clean shutdown."""

import asyncio
import logging
import os

import httpx
import pytest

from conveyor.cli import main
from conveyor.jobs import SqliteStore
from conveyor.service import ServiceConfig, create_app
from conveyor.service.keys import KeyRing, add_key, read_keys, revoke_key

from .conftest import api, config


class Ticks:
    """A monotonic clock the test moves by hand (the key ring re-reads at most once a second)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_required_ring_stays_closed_when_the_last_key_is_revoked_or_the_file_deleted(tmp_path):
    """With keys required (a public bind), no key left means every call needs one, never none."""
    path = tmp_path / "keys.json"
    record, _ = add_key(path, tenant="acme")
    ticks = Ticks()
    ring = KeyRing(path, clock=ticks, required=True)
    revoke_key(path, record.id)
    ticks.now = 2.0
    assert ring.enabled
    assert ring.empty
    path.unlink()
    ticks.now = 4.0
    assert ring.enabled
    assert not KeyRing(None, required=False).enabled


def test_revoking_the_last_key_of_a_public_service_answers_401_not_the_default_tenant(tmp_path):
    """The service bound beyond loopback refuses calls once no key is left (problem+json 401)."""
    keys_file = tmp_path / "keys.json"
    record, secret = add_key(keys_file, tenant="acme")
    cfg = ServiceConfig(
        store="memory:", keys_file=keys_file, files_dir=tmp_path / "files", require_keys=True
    )

    async def main_() -> None:
        async with api(cfg, worker=False) as a:
            auth = {"Authorization": f"Bearer {secret}"}
            assert (await a.client.get("/v1/jobs", headers=auth)).status_code == 200
            ring = a.asgi.state.service.keys
            revoke_key(keys_file, record.id)
            ring._checked_at = -1e18  # the next call re-reads the file (no waiting a second)
            r = await a.client.get("/v1/jobs")
            assert r.status_code == 401
            assert r.headers["content-type"] == "application/problem+json"
            assert "none is configured" in r.json()["detail"]
            keys_file.unlink()
            ring._checked_at = -1e18
            assert (await a.client.get("/v1/jobs")).status_code == 401

    asyncio.run(main_())


def test_a_corrupt_keys_file_keeps_the_last_good_keys_and_logs(tmp_path, caplog):
    """A keys file that becomes garbage changes nothing for callers; the error is logged."""
    path = tmp_path / "keys.json"
    _, secret = add_key(path, tenant="acme")
    ticks = Ticks()
    ring = KeyRing(path, clock=ticks)
    path.write_text("{garbage")
    os.utime(path, ns=(1, 1))  # a new mtime, whatever the file system's resolution
    ticks.now = 2.0
    with caplog.at_level(logging.ERROR, logger="conveyor.service"):
        assert ring.tenant_of(secret) == "acme"
    assert "keys file is unusable" in caplog.text
    assert not ring.unavailable


def test_a_keys_file_corrupt_before_any_good_read_answers_503_without_paths(tmp_path):
    """Never a good set of keys: every call is 503 problem+json, naming no file or parse error."""
    keys_file = tmp_path / "keys.json"
    cfg = ServiceConfig(store="memory:", keys_file=keys_file, files_dir=tmp_path / "files")

    async def main_() -> None:
        async with api(cfg, worker=False) as a:
            assert (await a.client.get("/v1/jobs")).status_code == 200  # no file: no keys
            keys_file.write_text("{garbage")
            a.asgi.state.service.keys._checked_at = -1e18
            r = await a.client.get("/v1/jobs")
            assert r.status_code == 503
            assert r.headers["content-type"] == "application/problem+json"
            assert str(tmp_path) not in r.text
            assert "Expecting" not in r.text

    asyncio.run(main_())


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/results?cursor=99999999999999999999", {}),
        ("/results?format=json&cursor=99999999999999999999", {}),
        ("/results?cursor=%C2%B2", {}),
        ("/events", {"Last-Event-ID": "\u00b2"}),
        ("/events", {"Last-Event-ID": "99999999999999999999"}),
    ],
)
def test_out_of_range_cursors_and_event_ids_are_422_not_500(tmp_path, path, headers):
    """Cursors and Last-Event-ID must match ^[0-9]{1,18}$ (superscripts, 20 digits: 422)."""

    async def main_() -> None:
        async with api(config(tmp_path), worker=False) as a:
            job = (await a.client.post("/v1/jobs", json={"task": "echo", "items": [1]})).json()
            wire = {k: v.encode() for k, v in headers.items()}
            r = await a.client.get(f"/v1/jobs/{job['id']}{path}", headers=wire)
            assert r.status_code == 422, r.text

    asyncio.run(main_())


def test_event_streams_end_when_the_service_begins_to_stop(tmp_path):
    """After begin_shutdown (SIGTERM), a job's event stream and the list stream end at once."""

    async def main_() -> None:
        async with api(config(tmp_path), worker=False) as a:
            job = (await a.client.post("/v1/jobs", json={"task": "echo", "items": [1]})).json()
            service = a.asgi.state.service
            events = asyncio.create_task(a.client.get(f"/v1/jobs/{job['id']}/events"))
            listing = asyncio.create_task(a.client.get("/v1/events"))
            for _ in range(100):  # loop turns, no time: both requests reach their streams
                await asyncio.sleep(0)
            assert not events.done()
            service.begin_shutdown()
            async with asyncio.timeout(5):  # a bound, not a wait: they end at once
                r1, r2 = await events, await listing
            assert r1.status_code == r2.status_code == 200
            assert service.closing.is_set()

    asyncio.run(main_())


def test_keys_accepts_keys_file_after_the_action(tmp_path, capsys):
    """`conveyor keys add --keys-file X` works like `conveyor keys --keys-file X add`."""
    path = tmp_path / "keys.json"
    assert main(["keys", "add", "--tenant", "acme", "--keys-file", str(path)]) == 0
    assert [k.tenant for k in read_keys(path)] == ["acme"]
    assert main(["keys", "ls", "--keys-file", str(path)]) == 0
    assert "tenant=acme" in capsys.readouterr().out


@pytest.mark.parametrize(
    "body",
    [
        b'{"task": "echo", "items": [1, NaN]}',
        b'{"task": "echo", "items": [1, 1e999]}',
        b'{"task": "echo", "items": [1, {"x": -Infinity}]}',
    ],
)
def test_items_that_are_not_finite_json_are_422_naming_the_item(tmp_path, body):
    """NaN and 1e999 (infinite) are refused at submit, naming item 1; no job is written."""

    async def main_() -> None:
        async with api(config(tmp_path), worker=False) as a:
            r = await a.client.post(
                "/v1/jobs", content=body, headers={"Content-Type": "application/json"}
            )
            assert r.status_code == 422, r.text
            assert "item 1" in r.json()["detail"]
            assert (await a.client.get("/v1/jobs")).json()["data"] == []

    asyncio.run(main_())


@pytest.mark.parametrize("line", [b"NaN", b"[1e999]", b'{"x": Infinity}', b'"\\udc00"'])
def test_an_uploaded_line_that_is_not_finite_json_or_valid_text_is_422(tmp_path, line):
    """POST /v1/files refuses a NaN / Infinity / lone-surrogate line, naming its line number."""

    async def main_() -> None:
        async with api(config(tmp_path), worker=False) as a:
            r = await a.client.post("/v1/files", content=b"1\n" + line + b"\n")
            assert r.status_code == 422, r.text
            assert "line 2" in r.json()["detail"]

    asyncio.run(main_())


def test_an_idempotency_key_reused_with_another_body_is_422(tmp_path):
    """Same key, same body: the first job again; same key, another body: 422 saying so."""

    async def main_() -> None:
        async with api(config(tmp_path), worker=False) as a:
            key = {"Idempotency-Key": "order-1"}
            first = await a.client.post(
                "/v1/jobs", json={"task": "echo", "items": [1]}, headers=key
            )
            again = await a.client.post(
                "/v1/jobs", json={"task": "echo", "items": [1]}, headers=key
            )
            assert first.status_code == again.status_code == 202
            assert again.json()["id"] == first.json()["id"]
            other = await a.client.post(
                "/v1/jobs", json={"task": "echo", "items": [2]}, headers=key
            )
            assert other.status_code == 422
            assert other.headers["content-type"] == "application/problem+json"
            assert "already used for another request" in other.json()["detail"]

    asyncio.run(main_())


def test_an_uploaded_files_location_answers_and_the_task_field_names_a_real_endpoint(tmp_path):
    """POST /v1/files's Location is a working GET; JobCreate.task points at GET /v1/service."""

    async def main_() -> None:
        async with api(config(tmp_path), worker=False) as a:
            r = await a.client.post("/v1/files", content=b"1\n2\n")
            assert r.status_code == 201
            assert (await a.client.get(r.headers["location"])).status_code == 200
            spec = (await a.client.get("/openapi.json")).json()
            task = spec["components"]["schemas"]["JobCreate"]["properties"]["task"]
            assert "GET /v1/service" in task["description"]
            assert "/v1/service" in spec["paths"]

    asyncio.run(main_())


def test_an_unexpected_error_is_one_500_problem_and_one_log_record(tmp_path, caplog):
    """A failing store: 500 problem+json without internals, logged once (not re-raised too)."""

    async def main_() -> None:
        async with api(config(tmp_path), worker=False) as a:
            store = a.asgi.state.service.jobs.store

            async def broken(**_: object) -> None:
                msg = "secret internals"
                raise RuntimeError(msg)

            store.list_jobs = broken
            with caplog.at_level(logging.ERROR):
                r = await a.client.get("/v1/jobs")  # the transport re-raises what escapes
            assert r.status_code == 500
            assert r.headers["content-type"] == "application/problem+json"
            assert "secret internals" not in r.text
            records = [rec for rec in caplog.records if rec.levelno >= logging.ERROR]
            assert len(records) == 1
            assert "GET /v1/jobs failed" in records[0].getMessage()

    asyncio.run(main_())


def test_sigterm_on_serve_with_an_sse_client_connected_exits_promptly(tmp_path):
    """`conveyor serve` gets SIGTERM while a client follows a running job: it exits in seconds.

    A real process, because the hang was uvicorn's wait for open connections on a signal.
    Bounded: the process must be gone within 20 s (it takes about 1 s: --grace-s 1).
    """
    import signal
    import socket
    import subprocess
    import sys
    import time
    from pathlib import Path

    import httpx

    (tmp_path / "slowapp.py").write_text(
        "import asyncio\nfrom conveyor import App\napp = App()\n"
        "@app.task('slow')\nasync def slow(item):\n    await asyncio.sleep(600)\n"
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    src = str(Path(__file__).parents[2] / "src")
    env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{tmp_path}"}
    command = [
        sys.executable, "-m", "conveyor", "serve", "--port", str(port), "--app", "slowapp:app",
        "--store", f"sqlite:///{tmp_path / 'jobs.db'}", "--keys-file", str(tmp_path / "k.json"),
        "--grace-s", "1",
    ]  # fmt: skip
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=10) as client:
            deadline = time.monotonic() + 20
            while True:  # the server starts: connection refused until it listens
                try:
                    client.get("/v1/service")
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "serve did not start within 20 s"
                    time.sleep(0.05)
            job = client.post("/v1/jobs", json={"task": "slow", "items": [1]}).json()
            with client.stream("GET", f"/v1/jobs/{job['id']}/events") as events:
                lines = events.iter_lines()
                assert next(lines).startswith("retry:")
                proc.send_signal(signal.SIGTERM)
                for _ in lines:  # the stream ends (the server closes it)
                    pass
        # uvicorn re-raises the signal once it has shut down cleanly: -SIGTERM, or 0.
        assert proc.wait(timeout=20) in {0, -signal.SIGTERM}, (tmp_path / "serve.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()

    async def status() -> tuple[str, int]:
        store = SqliteStore(tmp_path / "jobs.db")
        try:
            found = await store.get_job(job["id"])
            assert found is not None
            return found.status, found.counts.running
        finally:
            await store.close()

    # The worker stopped with its grace period and released the item: no worker has the job.
    assert asyncio.run(status()) == ("queued", 0)


PASSWORD = "hunter2-store-password"  # noqa: S105 - a made-up test value


def test_the_serve_start_up_line_shows_the_store_without_its_password(
    tmp_path, capsys, monkeypatch
):
    """`conveyor serve --store postgresql://user:password@...` prints the store, userinfo hidden."""
    import uvicorn

    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: None)
    store = f"postgresql://app:{PASSWORD}@127.0.0.1:1/jobs?sslpassword={PASSWORD}"
    keys = tmp_path / "keys.json"
    argv = ["serve", "--store", store, "--keys-file", str(keys), "--no-worker"]
    assert main([*argv, "--wait-for-store"]) == 0  # port 1: nothing there, start anyway
    out, err = capsys.readouterr()
    assert "store postgresql://***@127.0.0.1:1/jobs?sslpassword=***" in out
    assert PASSWORD not in out + err


def test_a_connection_base_url_with_credentials_is_refused_without_echoing_them():
    """connections.x.base_url = "https://user:password@host" is a ConfigError that hides them."""
    from conveyor import ConfigError
    from conveyor.service import Connection

    with pytest.raises(ConfigError, match="credentials") as caught:
        Connection(name="x", base_url=f"https://app:{PASSWORD}@api.example.com")
    assert PASSWORD not in str(caught.value)
    assert "https://***@api.example.com" in str(caught.value)


# -- body limits while streaming, and JSON no reader can take --------------------------------

_MiB = 1 << 20
_BOUNDARY = "conveyor-test-boundary"
_MULTIPART_HEAD = (
    f'--{_BOUNDARY}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
    f'--{_BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.jsonl"\r\n'
    "Content-Type: application/jsonl\r\n\r\n"
).encode()


class CountedBody:
    """A request body of `total` bytes made on demand, counting how much the server pulled."""

    def __init__(self, total: int, head: bytes = b"") -> None:
        self.total = total
        self.head = head
        self.pulled = 0

    async def __aiter__(self):
        chunk = b"x" * _MiB
        if self.head:
            self.pulled += len(self.head)
            yield self.head
        while self.pulled < self.total:
            self.pulled += len(chunk)
            yield chunk


_ROUTES = {
    "batches": ("/v1/batches", "application/json", b""),
    "jobs": ("/v1/jobs", "application/json", b""),
    "files": ("/v1/files", "application/jsonl", b""),
    "files multipart": (
        "/v1/files",
        f"multipart/form-data; boundary={_BOUNDARY}",
        _MULTIPART_HEAD,
    ),
}


@pytest.mark.parametrize("route", sorted(_ROUTES))
def test_a_body_over_its_limit_is_413_before_more_than_one_chunk_past_it_is_read(tmp_path, route):
    """200 MB streamed (no length) to each body route: 413 problem+json, read to limit + 1 chunk."""
    from conveyor.service.body import MULTIPART_ROOM

    path, media, head = _ROUTES[route]
    body = CountedBody(200 * _MiB, head)

    async def main_() -> None:
        async with api(config(tmp_path, max_body_bytes=_MiB, max_file_bytes=2 * _MiB)) as a:
            r = await a.client.post(path, content=body, headers={"Content-Type": media})
            assert r.status_code == 413, r.text
            assert r.headers["content-type"] == "application/problem+json"
            limit = _MiB if path != "/v1/files" else 2 * _MiB + MULTIPART_ROOM
            assert body.pulled <= limit + _MiB + len(head)
            assert ("max_file_bytes" if path == "/v1/files" else "max_body_bytes") in r.json()[
                "detail"
            ]
            files = a.asgi.state.service.files.store
            assert await files.sweep_uploads(idle_s=-1.0) == 0  # no upload left behind
            assert await files.files("default") == []

    asyncio.run(main_())


@pytest.mark.parametrize("route", sorted(_ROUTES))
def test_a_declared_length_over_the_limit_is_413_with_nothing_read(tmp_path, route):
    """A Content-Length over the limit is answered 413 at once: not one byte is pulled."""
    path, media, head = _ROUTES[route]
    body = CountedBody(200 * _MiB, head)
    headers = {"Content-Type": media, "Content-Length": str(200 * _MiB)}

    async def main_() -> None:
        async with api(config(tmp_path, max_body_bytes=_MiB, max_file_bytes=2 * _MiB)) as a:
            r = await a.client.post(path, content=body, headers=headers)
            assert r.status_code == 413, r.text
            assert body.pulled == 0

    asyncio.run(main_())


def _peak_rss_bytes(pid: int) -> int:
    """The process's peak resident set (VmHWM), from /proc."""
    with open(f"/proc/{pid}/status") as status:  # noqa: PTH123 - a /proc file
        for row in status:
            if row.startswith("VmHWM:"):
                return int(row.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads /proc")  # noqa: PTH110
def test_the_service_memory_stays_flat_under_200_mb_over_limit_bodies(tmp_path):
    """`conveyor serve` sent 200 MB (chunked) to /v1/batches and to a multipart /v1/files.

    A real process, because what is measured is its peak resident memory (VmHWM), which must
    grow by less than 50 MB (the bodies were read whole before: 500 MB took it to 760 MB).
    Bounded waits: 20 s for the server to listen.
    """
    import socket
    import subprocess
    import sys
    import time
    from pathlib import Path

    import httpx

    (tmp_path / "limits.toml").write_text(
        f"[limits]\nmax_body_bytes = {_MiB}\nmax_file_bytes = {4 * _MiB}\n"
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    src = str(Path(__file__).parents[2] / "src")
    env = {**os.environ, "PYTHONPATH": src}
    command = [
        sys.executable, "-m", "conveyor", "serve", "--port", str(port),
        "--config", str(tmp_path / "limits.toml"),
        "--store", f"sqlite:///{tmp_path / 'jobs.db'}", "--keys-file", str(tmp_path / "k.json"),
    ]  # fmt: skip
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)

    def stream(head: bytes):
        chunk = b"x" * _MiB
        yield head
        for _ in range(200):
            yield chunk

    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            deadline = time.monotonic() + 20
            while True:
                try:
                    client.get("/v1/service")
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "serve did not start within 20 s"
                    time.sleep(0.05)
            before = _peak_rss_bytes(proc.pid)
            for path, media, head in (_ROUTES["batches"], _ROUTES["files multipart"]):
                try:
                    answer = client.post(
                        path, content=stream(head), headers={"Content-Type": media}
                    )
                    assert answer.status_code == 413, answer.text
                except (httpx.WriteError, httpx.RemoteProtocolError, httpx.ReadError):
                    pass  # the server answered 413 and closed while the client still wrote
                assert client.get("/v1/service").status_code == 200
            grown = _peak_rss_bytes(proc.pid) - before
        assert grown < 50 * _MiB, f"the service's peak memory grew by {grown / _MiB:.0f} MB"
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()


@pytest.mark.parametrize(
    ("path", "media"),
    [("/v1/jobs", "application/json"), ("/v1/files", "application/jsonl")],
)
def test_json_nested_100_000_deep_is_422_naming_the_depth(tmp_path, path, media):
    """A 100,000-deep body or uploaded line: 422 saying the nesting is too deep, never a 500."""
    deep = b"[" * 100_000 + b"]" * 100_000
    body = b'{"task": "echo", "items": [' + deep + b"]}" if path == "/v1/jobs" else b"1\n" + deep

    async def main_() -> None:
        async with api(config(tmp_path), worker=False) as a:
            r = await a.client.post(path, content=body, headers={"Content-Type": media})
            assert r.status_code == 422, r.text
            assert "nests arrays and objects more than 128 deep" in r.json()["detail"]
            if path == "/v1/files":
                assert r.json()["detail"].startswith("line 2 ")

    asyncio.run(main_())


@pytest.mark.parametrize(
    "path",
    [
        "/v1/jobs/%00",
        "/v1/jobs/a%00b/results",
        "/v1/jobs/a%01b/events",
        "/v1/jobs?task=e%00cho",
        "/v1/jobs?cursor=%7f",
        "/v1/files/%00",
        "/v1/batches/%0a",
    ],
)
def test_a_control_character_in_a_path_or_query_is_400_on_postgres_too(pg, path):
    """A NUL in an id or a filter: 400 naming it, before any store (PostgreSQL answered 500)."""
    from conveyor.jobs.stores.postgres import PostgresStore

    async def main_() -> httpx.Response:
        store = PostgresStore(pg)
        cfg = ServiceConfig(store="memory:", keys_file=None)
        asgi = create_app(cfg, store=store, worker=False)
        async with asgi.router.lifespan_context(asgi):
            transport = httpx.ASGITransport(app=asgi)
            async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
                return await c.get(path)

    answer = asyncio.run(main_())
    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert "control character" in answer.json()["detail"]
