"""The dashboard in real headless Chromium.

Debian's Chromium, driven by Playwright: submit a JSONL

file, watch the job progress, retry its failed items, cancel another job, take a screenshot.
Real time: a real server and browser; the jobs are sized to take about a second.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from .conftest import LiveServer

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's Chromium, installed here if missing (CI installs it the same way)."""
    if not Path(CHROMIUM).exists():
        if shutil.which("apt-get") is None or os.geteuid() != 0:
            if os.environ.get("CI") == "true":
                pytest.fail("chromium is missing and cannot be installed (needs root apt-get)")
            pytest.skip("chromium is missing; install it: apt-get install -y chromium")
        apt = shutil.which("apt-get") or "apt-get"
        subprocess.run([apt, "update", "-q"], check=True, capture_output=True)
        subprocess.run([apt, "install", "-y", "-q", "chromium"], check=True, capture_output=True)
    return CHROMIUM


def test_the_dashboard_submits_watches_retries_and_cancels(live: LiveServer, chromium, tmp_path):  # noqa: PLR0915
    """What the page shows follows the jobs: progress, counts, failed items, cancel, retry."""
    from playwright.sync_api import expect, sync_playwright

    items = [{"n": i, "fail": i in {3, 7}, "s": 0.02} for i in range(40)]
    upload = tmp_path / "items.jsonl"
    upload.write_text("".join(json.dumps(item) + "\n" for item in items))
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium, args=["--no-sandbox", "--disable-background-networking"]
        )
        page = browser.new_page(viewport={"width": 1100, "height": 1000})
        page.set_default_timeout(10_000)
        page.goto(live.url + "/")
        # Submit a file of 40 items of the flaky task: two fail on their first run.
        page.select_option("#task", "flaky")
        page.set_input_files("#file", str(upload))
        page.fill("#concurrency", "2")
        page.click("#submit")
        expect(page.locator("#job-status")).to_have_text("completed with 2 failed")
        expect(page.locator("#n-total")).to_have_text("40")
        expect(page.locator("#n-failed")).to_have_text("2")
        expect(page.locator("#job-progress")).to_have_text("100%")
        expect(page.locator("#failed tbody tr")).to_have_count(2)
        expect(page.locator("#failed tbody")).to_contain_text("RuntimeError: upstream hiccup on 3")
        expect(page.locator("#latency")).not_to_have_text("-")
        expect(page.locator("#spend-tokens")).to_be_hidden()  # not an LLM job: no tokens
        # Retry the failed items from the page: they succeed this time.
        page.click("#retry")
        expect(page.locator("#n-failed")).to_have_text("0")
        expect(page.locator("#n-succeeded")).to_have_text("40")
        expect(page.locator("#job-status")).to_have_text("completed")
        expect(page.locator("#no-failed")).to_be_visible()

        # A slow job: watch it progress, then cancel it from its page.
        slow = [{"n": i, "s": 0.05} for i in range(400)]
        body = {"task": "slow", "items": slow, "options": {"concurrency": 4}}
        job = httpx.post(live.url + "/v1/jobs", json=body, timeout=10).json()
        page.goto(f"{live.url}/#/jobs/{job['id']}")
        expect(page.locator("#job-status")).to_have_text("running")
        first = page.locator("#n-succeeded").inner_text()
        page.wait_for_function(
            "n => Number(document.querySelector('#n-succeeded').textContent) > Number(n) + 8",
            arg=first,
        )
        page.once("dialog", lambda dialog: dialog.accept())  # Cancel asks first
        page.click("#cancel")
        expect(page.locator("#job-status")).to_have_text("cancelled")
        assert int(page.locator("#n-cancelled").inner_text()) > 0
        expect(page.locator("#cancel")).to_be_disabled()
        page.screenshot(path=str(tmp_path / "job.png"), full_page=True)

        # The list shows both jobs with their status and a full bar for the completed one.
        page.goto(live.url + "/#/")
        rows = page.locator("#jobs tbody tr")
        expect(rows).to_have_count(2)
        expect(rows.nth(0)).to_contain_text("cancelled")
        expect(rows.nth(1)).to_contain_text("completed")
        expect(rows.nth(1)).to_contain_text("100%")
        page.screenshot(path=str(tmp_path / "list.png"), full_page=True)
        # An LLM job's spend, as the page renders the summary fields of GET /v1/jobs/{id}.
        shown = page.evaluate(
            """() => [
              spendText({tokens_in: 1234, tokens_out: 56, cost_usd: 0.0123, unpriced_answers: 0}),
              spendText({tokens_in: 10, tokens_out: 5, cost_usd: 0.00042, unpriced_answers: 2}),
              spendText({tokens_in: 10, tokens_out: 5, cost_usd: 0, unpriced_answers: 3}),
              spendText({throughput_per_s: 1}),
              spendText({tokens_in: 10, tokens_out: 5, cost_usd: 0.5, unpriced_answers: 0,
                         projected_cost_usd: 2.25}),
            ]"""
        )
        assert shown == [
            {"tokens": "1,234 in / 56 out", "cost": "$0.01"},
            {"tokens": "10 in / 5 out", "cost": "$0.00042 + 2 unpriced"},
            {"tokens": "10 in / 5 out", "cost": "no price"},
            None,
            {"tokens": "10 in / 5 out", "cost": "$0.50 (projected $2.25)"},
        ]
        browser.close()
    assert (tmp_path / "job.png").stat().st_size > 10_000
