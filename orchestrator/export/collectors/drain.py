"""DrainCollector — the run's per-target results from runs/<id>/result.json."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily, Metric

from orchestrator.export.collectors.common import TARGET_LABELS, num, read_doc

VERDICTS = ("PASS", "FAIL", "INFRA-ERROR")


class DrainCollector:
    """Last completed drain (ticks, seconds, when) and the verdict, per target.

    Args:
        path: result.json (schema spdlab.result/1); None or a missing file gives no data.
    """

    name = "drain"

    def __init__(self, path: Path | None):
        self.path = path

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        ticks = GaugeMetricFamily(
            "spdlab_drain_ticks", "Timer ticks the last completed drain took (median over trials)",
            labels=TARGET_LABELS,
        )  # fmt: skip
        seconds = GaugeMetricFamily(
            "spdlab_drain_seconds", "The last completed drain's length at the lab's tick length",
            labels=TARGET_LABELS,
        )  # fmt: skip
        completed = GaugeMetricFamily(
            "spdlab_drain_completed_timestamp_seconds",
            "When the last drain completed (Unix time)",
            labels=TARGET_LABELS,
        )
        verdict = GaugeMetricFamily(
            "spdlab_verdict", "1 on the target's current verdict, 0 on the others",
            labels=(*TARGET_LABELS, "verdict"),
        )  # fmt: skip
        doc = read_doc(self.path)
        for t in doc.get("targets", []) if doc else []:
            if not isinstance(t, dict) or not t.get("name"):
                continue
            labels = (str(t["name"]), str(t.get("build", "")))
            for family, key in ((ticks, "drain_ticks"), (seconds, "drain_seconds")):
                v = num(t, key)
                if v is not None:
                    family.add_metric(labels, v)
            v = num(t, "completed_at")
            if v is not None:
                completed.add_metric(labels, v)
            if t.get("verdict") in VERDICTS:
                for name in VERDICTS:
                    verdict.add_metric((*labels, name), 1.0 if t["verdict"] == name else 0.0)
        yield ticks
        yield seconds
        yield completed
        yield verdict
