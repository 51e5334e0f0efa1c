"""ScrapeCollector — runs the collectors over one shared snapshot, timing each (node_exporter)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol

from prometheus_client.core import GaugeMetricFamily, Metric

from orchestrator.export.snapshot import Snapshot

log = logging.getLogger(__name__)

# The parallel read of every target's stats, timed as a collector of its own.
SNAPSHOT = "admin"


class NamedCollector(Protocol):
    name: str

    def collect(self) -> Iterable[Metric]: ...


class ScrapeCollector:
    """Takes one snapshot per scrape, runs every collector on it, reports their health.

    A collector that raises loses its series for that scrape and reports
    spdlab_scrape_collector_success 0; the others are unaffected.

    Args:
        snapshot: the targets' stats source the collectors share.
        collectors: the collectors, in exposition order.
    """

    def __init__(self, snapshot: Snapshot, collectors: Sequence[NamedCollector]):
        self.snapshot = snapshot
        self.collectors = list(collectors)

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        duration: dict[str, float] = {}
        success: dict[str, bool] = {}
        out: list[Metric] = []
        t0 = time.perf_counter()
        with self.snapshot.scrape() as reading:
            duration[SNAPSHOT] = time.perf_counter() - t0
            success[SNAPSHOT] = not reading.error
            if reading.error:
                log.warning("%s", reading.error)
            for c in self.collectors:
                t1 = time.perf_counter()
                try:
                    got = list(c.collect())
                except Exception:
                    log.exception("collector %s failed", c.name)
                    got, success[c.name] = [], False
                else:
                    success[c.name] = True
                duration[c.name] = time.perf_counter() - t1
                out += got
        yield from out
        d = GaugeMetricFamily(
            "spdlab_scrape_duration_seconds", "How long each collector took this scrape",
            labels=("collector",),
        )  # fmt: skip
        s = GaugeMetricFamily(
            "spdlab_scrape_collector_success", "1 if the collector ran without an error",
            labels=("collector",),
        )  # fmt: skip
        for name in duration:
            d.add_metric((name,), duration[name])
            s.add_metric((name,), 1.0 if success[name] else 0.0)
        yield d
        yield s
