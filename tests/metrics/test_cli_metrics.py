"""``--metrics-port`` of ``conveyor worker`` and ``conveyor serve``, and life without the extra."""

import asyncio
import socket
import sys

import httpx
import pytest

from conveyor.cli import main
from conveyor.jobs import MemoryStore

from ..service.conftest import api, config


def test_a_worker_serves_its_metrics_on_the_port_asked_for(tmp_path, capsys):
    """--metrics-port 0: a free port on 127.0.0.1, said on start; the worker runs as before."""
    store = f"sqlite:///{tmp_path}/jobs.db"
    assert main(["worker", "--store", store, "--until-idle", "--metrics-port", "0"]) == 0
    out = capsys.readouterr().out
    assert "conveyor worker: metrics at http://127.0.0.1:" in out


def test_a_port_in_use_is_one_line_and_exit_status_2(tmp_path, capsys):
    """Another process on the port: said in one line naming it, no traceback."""
    store = f"sqlite:///{tmp_path}/jobs.db"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["worker", "--store", store, "--until-idle", "--metrics-port", str(port)])
    err = capsys.readouterr().err
    assert code == 2
    assert f"cannot listen on 127.0.0.1:{port}" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("command", ["worker", "serve"])
def test_a_port_that_is_not_one_is_refused_by_the_parser(command, capsys):
    """--metrics-port 70000: the parser refuses it, saying what a port is."""
    with pytest.raises(SystemExit) as exited:
        main([command, "--metrics-port", "70000"])
    assert exited.value.code == 2
    assert "from 1 to 65535" in capsys.readouterr().err


@pytest.fixture
def no_prometheus(monkeypatch):
    """The metrics extra not installed: prometheus_client cannot be imported."""
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    for name in [m for m in sys.modules if m.startswith("conveyor.metrics")]:
        monkeypatch.delitem(sys.modules, name)


def test_without_the_extra_a_worker_asked_for_metrics_says_how_to_add_it(
    no_prometheus, tmp_path, capsys
):
    """--metrics-port without prometheus-client: exit 2 naming pip install 'conveyor[metrics]'."""
    store = f"sqlite:///{tmp_path}/jobs.db"
    assert main(["worker", "--store", store, "--until-idle", "--metrics-port", "0"]) == 2
    assert "pip install 'conveyor[metrics]'" in capsys.readouterr().err


def test_without_the_extra_the_service_runs_and_metrics_say_how_to_add_them(
    no_prometheus, tmp_path
):
    """The service works; GET /metrics answers 404 naming the extra (not a 500)."""

    async def main_() -> tuple[httpx.Response, httpx.Response]:
        async with api(config(tmp_path), store=MemoryStore()) as service:
            r = await service.client.post("/v1/jobs", json={"task": "echo", "items": [1]})
            await service.wait_done(r.json()["id"])
            return r, await service.client.get("/metrics")

    submitted, metrics = asyncio.run(main_())
    assert submitted.status_code == 202
    assert metrics.status_code == 404
    assert "conveyor[metrics]" in metrics.json()["detail"]
