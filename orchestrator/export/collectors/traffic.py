"""TrafficCollector — packets the run's traffic generator sent to each target (traffic.json)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, Metric

from orchestrator.export.collectors.common import TARGET_LABELS, num, read_doc
from orchestrator.export.snapshot import Snapshot


class TrafficCollector:
    """spdlab_traffic_packets_sent_total from runs/<id>/traffic.json, read at scrape time.

    Args:
        path: traffic.json ({"targets": {name: {"sent": N, "rate_pps": x}}}); None or a
            missing file gives no data.
        snapshot: where target names get their build label.
    """

    name = "traffic"

    def __init__(self, path: Path | None, snapshot: Snapshot):
        self.path = path
        self.snapshot = snapshot

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        sent = CounterMetricFamily(
            "spdlab_traffic_packets_sent",
            "ESP packets the traffic generator sent towards the target",
            labels=TARGET_LABELS,
        )
        doc = read_doc(self.path)
        per_target = doc.get("targets") if doc else None
        if isinstance(per_target, dict):
            builds = {t.name: t.build for t in self.snapshot.targets()}
            for name in sorted(per_target):
                v = num(per_target, name, "sent")
                if v is not None:
                    sent.add_metric((name, builds.get(name, "")), v)
        yield sent
