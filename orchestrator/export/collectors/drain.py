"""DrainCollector — the run's per-target results from runs/<id>/result.json."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily, Metric

from orchestrator.export.collectors.common import TARGET_LABELS

VERDICTS = ("PASS", "FAIL", "UNRESOLVED", "INFRA-ERROR")


class DrainCollector:
    """Last completed drain (ticks, seconds, when) and the verdict, per target.

    Args:
        path: result.json (schema spdlab.result/2); None, a missing or unreadable file
            gives no data. A measure the target cannot observe gives no sample.
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
            "spdlab_verdict", "1 on the target's current verdict, 0 on the others; "
            "synthetic: the build is a synthetic control",
            labels=(*TARGET_LABELS, "verdict", "synthetic"),
        )  # fmt: skip
        for t in _targets(self.path):
            labels = (t.name, t.build)
            ticks_v = t.measures.drain_ticks
            if isinstance(ticks_v, int):
                ticks.add_metric(labels, float(ticks_v))
            if t.drain_seconds is not None:
                seconds.add_metric(labels, t.drain_seconds)
            if t.completed_at is not None:
                completed.add_metric(labels, t.completed_at)
            if t.verdict in VERDICTS:
                for name in VERDICTS:
                    verdict.add_metric((*labels, name, str(t.synthetic).lower()),
                                       1.0 if t.verdict == name else 0.0)  # fmt: skip
        yield ticks
        yield seconds
        yield completed
        yield verdict


def _targets(path: Path | None) -> list:
    """The run's targets, read fresh; none when the file is missing or not a result."""
    from orchestrator.export import result

    if path is None:
        return []
    try:
        return result.load(path).targets
    except result.ResultError:
        return []
