"""The dashboard tells the truth, in real headless Chromium: rates, pills, layout, actions.

Real time: a real server and browser (as ``test_dashboard_browser.py``); a job of 60 calls
through a limiter of 20 a second takes about three seconds. Screenshots at 1280 and 1920 px
go to ``/tmp/dashboard-shots/`` for a person to look at.
"""

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conveyor import Limiter
from conveyor.jobs import App
from conveyor.service import ServiceConfig, create_app

from .conftest import FAST_WORKER, LiveServer
from .test_dashboard_browser import chromium  # noqa: F401 - the fixture

#: Where a person finds the screenshots (fixed, as the brief of the page asks).
SHOTS = Path("/tmp/dashboard-shots")  # noqa: S108 - a known place to look, not a secret
LONG = "an upstream error that goes on and on " * 30


def truth_app() -> App:
    """``call`` through a limiter of 20/s (failing "fail" items, long message); ``slow``."""
    app = App()
    app.add_limiter(Limiter("api", requests_per_second=20))

    @app.task("call", limiters=["api"])
    async def call(item: Any) -> Any:
        await asyncio.sleep(0.02)
        if isinstance(item, dict) and item.get("fail"):
            raise ValueError(LONG)
        return item

    @app.task("slow")
    async def slow(item: Any) -> Any:
        await asyncio.sleep(0.05)
        return item

    return app


@pytest.fixture
def truth(tmp_path: Path) -> Iterator[LiveServer]:
    """A real server with `truth_app`, the SQLite store and a fast in-process worker."""
    cfg = ServiceConfig(
        store=f"sqlite:///{tmp_path / 'jobs.db'}",
        keys_file=None,
        files_dir=tmp_path / "files",
        events_interval_s=0.05,
    )
    with LiveServer(create_app(cfg, app=truth_app(), worker_options=FAST_WORKER)) as server:
        yield server


def _fits(page: Any) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth === window.innerWidth"))


def test_the_dashboard_tells_the_truth(truth: LiveServer, chromium: str) -> None:  # noqa: F811, PLR0915
    """Rates from the service under the limit, failures on the pill, no overflow, feedback."""
    from playwright.sync_api import expect, sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    # 60 calls at 20/s, 20 of them failing with a long message and a long input.
    items: list[Any] = [
        {"fail": True, "n": i, "note": "z" * 400} if i % 3 == 0 else {"n": i} for i in range(60)
    ]
    body = {"task": "call", "items": items, "options": {"concurrency": 40}}
    job = httpx.post(truth.url + "/v1/jobs", json=body, timeout=10).json()
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium, args=["--no-sandbox", "--disable-background-networking"]
        )
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.set_default_timeout(15_000)
        page.goto(f"{truth.url}/#/jobs/{job['id']}")
        pill = page.locator("#job-status")
        expect(pill).to_have_text("completed with 20 failed")
        expect(pill).to_have_class("status warn")
        series = httpx.get(f"{truth.url}/v1/jobs/{job['id']}/series", timeout=10).json()
        assert sum(series["per_s"]) == 60
        assert series["busiest_second"] <= 20  # no 1-s window above the limit...
        page.wait_for_function("window.lastChart && window.lastChart.points.length > 2")
        chart = page.evaluate("window.lastChart")
        (limit_y,) = chart["limitYs"]
        assert all(point["y"] >= limit_y - 0.01 for point in chart["points"])  # ...nor any point
        assert max(point["v"] for point in chart["points"]) <= 20
        # Honest percentiles ("≤ 30 ms"), created and duration, in flight apart from claimed.
        expect(page.locator("#latency")).to_contain_text("≤")
        assert "." not in page.locator("#latency").inner_text().split("≤")[1].split("ms")[0]
        expect(page.locator("#job-created")).not_to_have_text("-")
        expect(page.locator("#job-duration")).to_contain_text(" s")
        expect(page.locator("#n-running")).to_have_text("0")
        expect(page.locator("#failed tbody tr")).to_have_count(20)
        for width in (1280, 1920):
            page.set_viewport_size({"width": width, "height": 1000})
            page.wait_for_timeout(200)  # a frame for the layout
            assert _fits(page), f"the job page overflows at {width} px"
            page.screenshot(
                path=str(SHOTS / f"job-completed-with-failures-{width}.png"), full_page=True
            )
        # Retry failed: the page says what it did.
        page.click("#retry")
        expect(page.locator("#action-status")).to_have_text("Retrying 20 failed items.")
        expect(pill).to_have_text("completed with 20 failed")

        # A job cancelled early shows the work it did, not a full bar; Cancel asks first.
        slow = {
            "task": "slow",
            "items": [{"n": i} for i in range(2000)],
            "options": {"concurrency": 2},
        }
        other = httpx.post(truth.url + "/v1/jobs", json=slow, timeout=10).json()
        page.goto(f"{truth.url}/#/jobs/{other['id']}")
        expect(pill).to_have_text("running")
        asked: list[str] = []

        def refuse(dialog: Any) -> None:
            asked.append(dialog.message)
            dialog.dismiss()

        page.once("dialog", refuse)
        page.click("#cancel")
        assert len(asked) == 1
        assert "Cancel job" in asked[0]
        expect(pill).to_have_text("running")  # dismissed: still running
        page.once("dialog", lambda d: d.accept())
        page.click("#cancel")
        expect(page.locator("#action-status")).to_contain_text("Cancelling")
        expect(pill).to_have_text("cancelled")
        shown = float(page.locator("#job-progress").inner_text().rstrip("%"))
        assert 0 < shown < 50

        # The list: created and duration columns, the amber pill, no overflow.
        page.goto(truth.url + "/#/")
        rows = page.locator("#jobs tbody tr")
        expect(rows).to_have_count(2)
        expect(rows.nth(1)).to_contain_text("completed with 20 failed")
        expect(page.locator("#jobs thead")).to_contain_text("Created")
        expect(page.locator("#jobs thead")).to_contain_text("Duration")
        for width in (1280, 1920):
            page.set_viewport_size({"width": width, "height": 900})
            page.wait_for_timeout(200)
            assert _fits(page), f"the jobs list overflows at {width} px"
            page.screenshot(path=str(SHOTS / f"jobs-list-{width}.png"), full_page=True)

        # The limiters and the workers.
        page.goto(truth.url + "/#/limiters")
        card = page.locator("[data-limiter=api]")
        expect(card).to_contain_text("20 requests / 1 s")
        expect(card).to_contain_text("429s / overloads")
        page.wait_for_timeout(2500)  # two reads, a second apart: a span of rate to draw
        for width in (1280, 1920):
            page.set_viewport_size({"width": width, "height": 900})
            page.wait_for_timeout(200)
            assert _fits(page), f"the limiters page overflows at {width} px"
            page.screenshot(path=str(SHOTS / f"limiters-{width}.png"), full_page=True)
        page.goto(truth.url + "/#/workers")
        expect(page.locator("#workers tbody tr")).to_have_count(1)
        expect(page.locator("#workers tbody")).to_contain_text("alive")
        expect(page.locator("#own-worker")).to_contain_text("items settled")
        for width in (1280, 1920):
            page.set_viewport_size({"width": width, "height": 900})
            page.wait_for_timeout(200)
            assert _fits(page), f"the workers page overflows at {width} px"
            page.screenshot(path=str(SHOTS / f"workers-{width}.png"), full_page=True)
        icon = page.request.get(truth.url + "/favicon.ico")
        assert icon.status == 200
        browser.close()
