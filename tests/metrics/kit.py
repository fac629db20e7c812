"""Scrapes parsed by the Prometheus client's own parser, and the samples looked up by label."""

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from conveyor.jobs import WorkerOptions

#: Workers that write often: results land within half a second of virtual time.
FAST = WorkerOptions(lease_s=30, claim_size=50, batch_size=100, flush_interval_s=0.5)


class Scrape:
    """One scrape's families, by name."""

    def __init__(self, body: bytes | str) -> None:
        text = body.decode() if isinstance(body, bytes) else body
        self.families = {f.name: f for f in text_string_to_metric_families(text)}

    def value(self, name: str, **labels: str) -> float:
        """The one sample named `name` with exactly `labels` (KeyError if there is none)."""
        found = [s.value for s in self.samples(name) if s.labels == labels]
        if len(found) != 1:
            msg = f"{name}{labels}: {len(found)} samples; all: {self.samples(name)}"
            raise KeyError(msg)
        return float(found[0])

    def samples(self, name: str) -> list[Any]:
        """Every sample named `name` (a family's ``_total``, ``_count``... samples too)."""
        return [s for f in self.families.values() for s in f.samples if s.name == name]

    @property
    def names(self) -> set[str]:
        """The families' names as the parser gives them (counters without ``_total``)."""
        return set(self.families)
