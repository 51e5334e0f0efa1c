"""EspCollector — ESP input packets per target: accepted, and dropped by reason."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, Metric

from orchestrator.export.collectors.common import TARGET_LABELS, num
from orchestrator.export.snapshot import Snapshot


class EspCollector:
    """spdlab_esp_packets_total{result="ok"} and {result="drop", reason=...}."""

    name = "esp"

    def __init__(self, snapshot: Snapshot):
        self.snapshot = snapshot

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        reading = self.snapshot.get()
        packets = CounterMetricFamily(
            "spdlab_esp_packets",
            "ESP packets received: result is ok or drop; reason names the drop counter",
            labels=(*TARGET_LABELS, "result", "reason"),
        )
        for r in reading.up():
            labels = r.target.labels
            ok = num(r.stats, "esp", "ok")
            if ok is not None:
                packets.add_metric((*labels, "ok", ""), ok)
            drops = (r.stats or {}).get("esp", {}).get("drop", {})
            for reason in sorted(drops) if isinstance(drops, dict) else ():
                v = num(drops, reason)
                if v is not None:
                    packets.add_metric((*labels, "drop", reason), v)
        yield packets
