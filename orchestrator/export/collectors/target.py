"""TargetCollector — is each target's admin socket answering, and what build it runs."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric

from orchestrator.export.collectors.common import TARGET_LABELS
from orchestrator.export.snapshot import Snapshot


class TargetCollector:
    """spdlab_target_up for every target; spdlab_build_info for the ones that answered."""

    name = "target"

    def __init__(self, snapshot: Snapshot):
        self.snapshot = snapshot

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        reading = self.snapshot.get()
        up = GaugeMetricFamily(
            "spdlab_target_up", "1 if the target's admin socket answered stats this scrape",
            labels=TARGET_LABELS,
        )  # fmt: skip
        info = GaugeMetricFamily(
            "spdlab_build_info", "The build a target runs, firmware or kernel (value 1)",
            labels=(*TARGET_LABELS, "tree", "patches", "kind", "hardware", "synthetic"),
        )  # fmt: skip
        for r in reading.targets:
            t = r.target
            up.add_metric(t.labels, 1.0 if r.up else 0.0)
            if r.up:
                info.add_metric((*t.labels, t.tree, ",".join(t.patches), t.kind, t.hardware,
                                 str(t.synthetic).lower()), 1.0)  # fmt: skip
        yield up
        yield info
