"""The how-to's list of metrics is the registry's: same names, types and labels, none missing."""

import asyncio
import re
from pathlib import Path

import conveyor
from conveyor.jobs import Jobs, MemoryStore, Worker
from conveyor.limits.limiter import Limiter
from conveyor.metrics import Metrics

from .kit import FAST, Scrape
from .llm_kit import line, llm_app

PAGE = Path(__file__).resolve().parents[2] / "docs" / "howto" / "monitor-with-prometheus.md"
ROW = re.compile(r"^\| `(conveyor_\w+)` \| (\w+) \|([^|]*)\|", re.MULTILINE)


def _documented() -> dict[str, tuple[str, frozenset[str]]]:
    rows = ROW.findall(PAGE.read_text(encoding="utf-8"))
    return {name: (kind, frozenset(re.findall(r"`(\w+)`", labels))) for name, kind, labels in rows}


def _scraped(run) -> dict[str, tuple[str, frozenset[str]]]:
    """A scrape after work that gives every family a sample: names, types, labels."""
    store, app = MemoryStore(), llm_app()
    limiter = app.add_limiter(Limiter("api", requests_per_minute=600, concurrency=4, window_s=1))
    seen: set[int] = set()

    @app.task("flaky", limiters=["api"])
    async def flaky(x):
        if x not in seen:
            seen.add(x)
            raise conveyor.RetryAfter(1.0)
        if x == 2:
            raise ValueError(x)
        return x

    metrics = Metrics(app=app, store=store)

    async def main() -> bytes:
        jobs = Jobs(store, app=app)
        await jobs.submit("flaky", [1, 2], attempts=2)
        await jobs.submit("http", [line(0)])
        limiter.observe_headers({"x-ratelimit-remaining-requests": "5"})
        await Worker(store, app, options=FAST, observers=[metrics.observer]).run(until_idle=True)
        await jobs.submit("flaky", [3])  # one left queued
        await asyncio.sleep(1.0)
        return (await metrics.render())[0]

    scrape = Scrape(run(main()))
    found = {}
    for family in scrape.families.values():
        if family.name.endswith("_created"):
            continue  # prometheus-client's own series, said on the page
        exposed = f"{family.name}_total" if family.type == "counter" else family.name
        labels = frozenset(k for s in family.samples for k in s.labels) - {"le"}
        assert family.samples, f"{exposed} has no sample in this scrape: make the work give one"
        found[exposed] = (family.type, labels)
    return found


def test_the_page_lists_exactly_the_metrics_a_scrape_shows(run):
    """Every family scraped is on the page with its type and labels, and nothing else is."""
    documented, scraped = _documented(), _scraped(run)
    assert len(documented) >= 30
    assert sorted(documented) == sorted(scraped)
    for name, (kind, labels) in scraped.items():
        assert documented[name] == (kind, labels), name
