"""Without API keys the service answers only loopback Host names: DNS rebinding reaches nothing.

A page the local user opens can make the browser call the service under the page's own name
(its DNS then pointed at 127.0.0.1); the Host header gives it away. With keys, any Host is
answered as before.
"""

import asyncio
from typing import Any

import httpx
import pytest

from conveyor.cli import main
from conveyor.errors import ConfigError
from conveyor.jobs import MemoryStore
from conveyor.service import ServiceConfig, create_app, load_config
from conveyor.service.hosts import host_allowed, host_of

from .conftest import FAST_WORKER, LiveServer, api, config, key_for, make_app

JOB = {"task": "echo", "items": [1, 2]}
# Every kind of route: the API, the dashboard, its files, the OpenAPI document, the streams.
GETS = ["/v1/jobs", "/v1/service", "/", "/static/app.js", "/openapi.json", "/v1/events"]


def _assert_refused(r: httpx.Response, host: str) -> None:
    assert r.status_code == 421, r.text
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["title"] == "Misdirected Request"
    assert repr(host) in problem["detail"]
    assert "--allowed-host" in problem["detail"]
    assert "conveyor keys add" in problem["detail"]


@pytest.mark.parametrize("host", ["evil.example:8000", "evil.example", "127.0.0.1.nip.io:8000"])
def test_a_foreign_host_reaches_no_route_without_keys(tmp_path, host):
    """GET and POST under another name: 421 problem+json naming it and the fix; no job made."""

    async def main_() -> None:
        async with api(config(tmp_path)) as a:
            for path in GETS:
                _assert_refused(await a.client.get(path, headers={"Host": host}), host)
            r = await a.client.post("/v1/jobs", json=JOB, headers={"Host": host})
            _assert_refused(r, host)
            files = await a.client.post("/v1/files", content=b"1\n", headers={"Host": host})
            _assert_refused(files, host)
            assert (await a.client.get("/v1/jobs")).json()["data"] == []  # Host: localhost
            assert not list((tmp_path / "files").rglob("*"))

    asyncio.run(main_())


@pytest.mark.parametrize(
    "host",
    [
        *("localhost", "localhost:8000", "LOCALHOST:1"),
        *("127.0.0.1", "127.0.0.1:8000", "127.8.9.10"),
        *("[::1]", "[::1]:8000", "[0:0:0:0:0:0:0:1]:80"),
    ],
)
def test_loopback_names_are_answered_on_any_port_without_keys(tmp_path, host):
    """localhost, 127.0.0.0/8 and [::1], any port and case: answered as before."""

    async def main_() -> None:
        async with api(config(tmp_path)) as a:
            r = await a.client.post("/v1/jobs", json=JOB, headers={"Host": host})
            assert r.status_code == 202, r.text
            assert (await a.client.get("/", headers={"Host": host})).status_code == 200

    asyncio.run(main_())


def test_with_keys_any_host_is_answered(tmp_path):
    """With API keys, a foreign Host is answered (401 without a key, 202 with one)."""

    async def main_() -> None:
        auth = key_for(tmp_path, "acme")
        async with api(config(tmp_path, keys=True)) as a:
            host = {"Host": "jobs.example.com"}
            assert (await a.client.get("/v1/jobs", headers=host)).status_code == 401
            r = await a.client.post("/v1/jobs", json=JOB, headers={**host, **auth})
            assert r.status_code == 202, r.text

    asyncio.run(main_())


async def _raw(asgi: Any, headers: list[tuple[bytes, bytes]], server: Any = None) -> int:
    """Send GET /v1/jobs with exactly these headers (httpx always sets one Host); the status."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/v1/jobs",
        "raw_path": b"/v1/jobs",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 5000),
        "server": server,
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await asgi(scope, receive, send)
    return int(sent[0]["status"])


@pytest.mark.parametrize(
    "headers",
    [
        [],
        [(b"host", b"localhost"), (b"host", b"evil.example")],
        [(b"host", b"localhost:http")],
        [(b"host", b"localhost@evil.example")],
        [(b"host", b"[::1")],
        [(b"host", b"localhost.")],
        [(b"host", b"")],
    ],
)
def test_a_missing_repeated_or_malformed_host_is_421(tmp_path, headers):
    """No Host, two of them, or one that is not host[:port]: refused like a foreign name."""

    async def main_() -> None:
        asgi = create_app(config(tmp_path), app=make_app(), store=MemoryStore(), worker=False)
        async with asgi.router.lifespan_context(asgi):
            assert await _raw(asgi, headers, ("127.0.0.1", 8000)) == 421
            assert await _raw(asgi, [(b"host", b"localhost")], ("127.0.0.1", 8000)) == 200

    asyncio.run(main_())


def test_the_address_the_request_reached_is_answered_but_never_a_name(tmp_path):
    """A service bound to a LAN address answers Host: that address; a name for it stays 421."""

    async def main_() -> None:
        asgi = create_app(config(tmp_path), app=make_app(), store=MemoryStore(), worker=False)
        server = ("192.168.1.5", 8000)
        async with asgi.router.lifespan_context(asgi):
            assert await _raw(asgi, [(b"host", b"192.168.1.5:8000")], server) == 200
            assert await _raw(asgi, [(b"host", b"192.168.1.6:8000")], server) == 421
            assert await _raw(asgi, [(b"host", b"lan.example:8000")], server) == 421

    asyncio.run(main_())


def test_allowed_hosts_are_answered_and_others_still_refused(tmp_path):
    """`allowed_hosts` adds the name a proxy forwards; any other name is still 421."""
    cfg = ServiceConfig(
        store="memory:",
        keys_file=None,
        files_dir=tmp_path / "files",
        allowed_hosts=("Jobs.Internal", "[fd00::5]"),
    )
    assert cfg.allowed_hosts == ("jobs.internal", "fd00::5")

    async def main_() -> None:
        async with api(cfg) as a:
            for host in ("jobs.internal:8080", "JOBS.INTERNAL", "[fd00::5]:80"):
                r = await a.client.post("/v1/jobs", json=JOB, headers={"Host": host})
                assert r.status_code == 202, (host, r.text)
            r = await a.client.get("/v1/jobs", headers={"Host": "evil.internal"})
            _assert_refused(r, "evil.internal")

    asyncio.run(main_())


@pytest.mark.parametrize("bad", ["*", "jobs.internal:8080", "http://jobs.internal", "", "a b"])
def test_an_allowed_host_that_is_not_a_bare_name_is_refused_at_construction(bad):
    """A wildcard, a port, a scheme or an empty name: ConfigError naming the value and the fix."""
    with pytest.raises(ConfigError, match=r"allowed_hosts=.*pass a host name or address"):
        ServiceConfig(allowed_hosts=(bad,))
    with pytest.raises(ConfigError, match="pass a list of host names"):
        ServiceConfig(allowed_hosts="jobs.internal")  # type: ignore[arg-type]


def test_allowed_hosts_are_read_from_the_config_file(tmp_path):
    """`allowed_hosts = [...]` in the TOML config is the same setting."""
    path = tmp_path / "conveyor.toml"
    path.write_text('allowed_hosts = ["jobs.internal"]\n')
    assert load_config(path).allowed_hosts == ("jobs.internal",)


def test_serve_refuses_a_bad_allowed_host_in_one_line(tmp_path, capsys):
    """`conveyor serve --allowed-host '*'`: exit 2, one line saying what to pass, no traceback."""
    keys = str(tmp_path / "keys.json")
    code = main(["serve", "--keys-file", keys, "--allowed-host", "*", "--store", "memory:"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1
    assert err.startswith("conveyor serve: allowed_hosts='*': pass a host name or address")


def test_serve_passes_allowed_hosts_to_the_service(tmp_path):
    """`--allowed-host` (repeatable) is added to the config file's allowed_hosts."""
    from conveyor.cli import serve

    path = tmp_path / "conveyor.toml"
    path.write_text('allowed_hosts = ["a.internal"]\n')
    args = _serve_args(["--config", str(path), "--allowed-host", "B.internal"])
    assert serve._config(args).allowed_hosts == ("a.internal", "b.internal")


def _serve_args(argv: list[str]) -> Any:
    import argparse

    from conveyor.cli import serve

    parser = argparse.ArgumentParser()
    serve.add_commands(parser.add_subparsers())
    return parser.parse_args(["serve", *argv])


def test_host_of_and_host_allowed_are_pure_rules():
    """The Host parse and the decision, on plain values."""
    assert host_of(" LocalHost:8000 ") == "localhost"
    assert host_of("[::1]:8000") == "::1"
    assert host_of("evil.example:8000") == "evil.example"
    for bad in ("", "a:b", "[::1]x", "x:", "a..b", "h\u00e9.example"):
        assert host_of(bad) is None, bad
    none: frozenset[str] = frozenset()
    assert host_allowed("127.0.0.1", server=None, allowed=none)
    assert host_allowed("::1", server=None, allowed=none)
    assert not host_allowed("evil.example", server="127.0.0.1", allowed=none)
    assert not host_allowed("localhost.evil.example", server=None, allowed=none)
    assert host_allowed("10.0.0.2", server="10.0.0.2", allowed=none)
    assert not host_allowed("10.0.0.2", server="10.0.0.3", allowed=none)
    assert host_allowed("jobs.internal", server=None, allowed=frozenset({"jobs.internal"}))


def test_a_dns_rebinding_request_on_a_real_socket_is_421(tmp_path):
    """Over a real socket (uvicorn, 127.0.0.1): Host evil.example:8000 GET and POST are 421."""
    cfg = ServiceConfig(store="memory:", keys_file=None, files_dir=tmp_path / "files")
    asgi = create_app(cfg, app=make_app(), store=MemoryStore(), worker_options=FAST_WORKER)
    host = "evil.example:8000"
    with LiveServer(asgi) as server, httpx.Client(base_url=server.url) as client:
        _assert_refused(client.get("/v1/jobs", headers={"Host": host}), host)
        _assert_refused(client.post("/v1/jobs", json=JOB, headers={"Host": host}), host)
        _assert_refused(client.get("/", headers={"Host": host}), host)
        assert client.get("/v1/jobs").json()["data"] == []  # Host: 127.0.0.1:PORT, answered
