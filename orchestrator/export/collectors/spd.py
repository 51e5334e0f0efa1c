"""SpdCollector — the SPD's live state and its firmware counters, per target."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from orchestrator.export.collectors.common import TARGET_LABELS, num
from orchestrator.export.snapshot import Snapshot

# metric (without _total) → help, path in the `stats` answer
COUNTERS = {
    "spdlab_spd_unlinked": ("Policies unlinked from the SPD table", ("spd", "unlinked")),
    "spdlab_spd_freed": ("Policies freed", ("spd", "freed")),
    "spdlab_spd_premature_frees": (
        "Policies freed while a flow still held a reference",
        ("spd", "premature_frees"),
    ),
    "spdlab_spd_use_after_free": (
        "Packets that touched a freed policy through a flow's cache",
        ("spd", "use_after_free"),
    ),
    "spdlab_spd_timer_ticks": ("Timer ticks run (key_timehandler)", ("ticks",)),
    "spdlab_spd_lookups": ("SPD lookups (key_allocsp)", ("spd", "lookups")),
    "spdlab_spd_lookup_entries_walked": (
        "Table entries walked by SPD lookups",
        ("spd", "lookup_walked"),
    ),
}


class SpdCollector:
    """Alive and dead linked policies by direction, allocated policies, SPD counters."""

    name = "spd"

    def __init__(self, snapshot: Snapshot):
        self.snapshot = snapshot

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        reading = self.snapshot.get()
        policies = GaugeMetricFamily(
            "spdlab_spd_policies", "Policies linked in the SPD table, by state and direction",
            labels=(*TARGET_LABELS, "state", "dir"),
        )  # fmt: skip
        allocated = GaugeMetricFamily(
            "spdlab_spd_policies_allocated",
            "Policies allocated (linked or not, until freed)",
            labels=TARGET_LABELS,
        )
        counters = {
            name: CounterMetricFamily(name, doc, labels=TARGET_LABELS)
            for name, (doc, _) in COUNTERS.items()
        }
        for r in reading.up():
            labels = r.target.labels
            for state in ("alive", "dead"):
                for d in ("in", "out"):
                    v = num(r.stats, "spd", state, d)
                    if v is not None:
                        policies.add_metric((*labels, state, d), v)
            v = num(r.stats, "spd", "allocated")
            if v is not None:
                allocated.add_metric(labels, v)
            for name, (_, path) in COUNTERS.items():
                v = num(r.stats, *path)
                if v is not None:
                    counters[name].add_metric(labels, v)
        yield policies
        yield allocated
        yield from counters.values()
