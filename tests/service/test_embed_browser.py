"""The how-to "Add background jobs to a FastAPI app", run as written, in real Chromium.

Its ``main.py`` (a FastAPI app with the job API mounted at /jobs) runs with uvicorn on one
port of 127.0.0.1 (origin A); its ``index.html`` is served from another port (origin B, the
allowed front end) and a third (origin C, not allowed). Only the page's API address and key
are filled in. Real time: real servers and a browser; the doc's task takes about a second.
"""

import importlib.util
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

from conveyor.service.keys import add_key

from .conftest import LiveServer
from .test_dashboard_browser import chromium  # noqa: F401 - the fixture

HOWTO = Path(__file__).resolve().parents[2] / "docs" / "howto" / "add-jobs-to-a-fastapi-app.md"


def _block(kind: str) -> str:
    found: list[str] = re.findall(rf"```{kind}\n(.*?)```", HOWTO.read_text("utf-8"), re.DOTALL)
    [code] = found
    return code


class FrontEnd:
    """A server of the how-to's page, once its API address and key are known."""

    def __init__(self) -> None:
        self.html = "not yet"

        async def page(_: Any) -> HTMLResponse:
            return HTMLResponse(self.html)

        self.server = LiveServer(Starlette(routes=[Route("/", page)]))

    def fill(self, api: str, key: str) -> None:
        html = _block("html")
        html = re.sub(r'const API = "[^"]*";', f"const API = {json.dumps(api)};", html)
        self.html = re.sub(r'const KEY = "[^"]*";', f"const KEY = {json.dumps(key)};", html)


@pytest.fixture
def howto(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str, str, str]]:
    """The doc's app (A), its page on an allowed origin (B) and on another (C); and the key."""
    monkeypatch.chdir(tmp_path)  # main.py keeps its store and keys in the current folder
    _, key = add_key(tmp_path / "conveyor-keys.json", tenant="web")
    allowed, other = FrontEnd(), FrontEnd()
    with allowed.server, other.server:
        monkeypatch.setenv("FRONT_END_ORIGIN", allowed.server.url)
        (tmp_path / "main.py").write_text(_block("python"), encoding="utf-8")
        spec = importlib.util.spec_from_file_location("howto_main", tmp_path / "main.py")
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        with LiveServer(module.app) as app:
            api = app.url + "/jobs"
            allowed.fill(api, key)
            other.fill(api, key)
            yield app.url, allowed.server.url, other.server.url, key
        sys.modules.pop("howto_main", None)


def test_a_page_on_another_origin_starts_follows_and_sees_the_end(howto, chromium):  # noqa: F811
    """Origin B: 202, live events with a token, completed or failed; polling; C is refused."""
    from playwright.sync_api import expect, sync_playwright

    app, allowed, other, key = howto
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium, args=["--no-sandbox", "--disable-background-networking"]
        )
        page = browser.new_page()
        page.set_default_timeout(10_000)
        page.goto(allowed)
        # Live: the job's events, opened with a stream token, to the end.
        page.click("#start")
        expect(page.locator("#status")).to_have_text("completed")
        expect(page.locator("#via")).to_have_text("live (events)")
        expect(page.locator("#bar")).to_have_js_property("value", 100)
        expect(page.locator("#step")).to_have_text("Completed: 1 of 1 items succeeded")
        steps = page.locator("#log li").all_inner_texts()
        assert len(steps) >= 2, steps  # progress came before the end
        # The task raises: the page sees "failed" and why, with no other field to read.
        page.fill("#repo", "acme/missing")
        page.click("#start")
        expect(page.locator("#status")).to_have_text("failed")
        expect(page.locator("#error")).to_have_text("LookupError: no repository 'acme/missing'")
        expect(page.locator("#step")).to_have_text(
            "Failed: LookupError: no repository 'acme/missing'"
        )
        # The plain way: GET the job every second.
        page.uncheck("#live")
        page.fill("#repo", "acme/web")
        page.click("#start")
        expect(page.locator("#via")).to_have_text("polling")
        expect(page.locator("#status")).to_have_text("completed")
        # A page on an origin the app does not list: its browser refuses (no job is made).
        refused = browser.new_page()
        refused.set_default_timeout(10_000)
        refused.goto(other)
        refused.click("#start")
        expect(refused.locator("#error")).to_have_text("Failed to fetch")
        # The dashboard, under the mount, with the key.
        page.goto(app + "/jobs/")
        page.fill("#key", key)
        page.click("#key-form button")
        expect(page.locator("#jobs tbody tr")).to_have_count(3)
        browser.close()
    jobs = httpx.get(
        app + "/jobs/v1/jobs", headers={"Authorization": f"Bearer {key}"}, timeout=10
    ).json()["data"]
    assert sorted(j["status"] for j in jobs) == ["completed", "completed", "failed"]
    assert httpx.get(app + "/api/hello", timeout=10).json() == {"hello": "world"}
