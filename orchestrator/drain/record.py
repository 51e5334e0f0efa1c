"""Per-tick drain records of one target, read from netkeyd's tick ring.

Ticks count from the tick at which the delete completed: the records of
later ticks are kept as they are, and nothing between two polls is missed
because the ring holds every tick.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from orchestrator.targets.protocols import StatsEndpoint

# The table's side of a drain: what a patch to the SPD can change.  Frees and
# allocations also follow when traffic lets go, so they stay out of it.
SERIES_KEYS = ("unlinked", "dead_in", "dead_out", "alive_in", "alive_out")


@dataclass
class Drain:
    """What one target did after its mass delete.

    Attributes:
        delete_tick: the target's clock when the delete completed (rel. tick 0).
        removed_by_delete: policies unlinked by the delete messages themselves.
        drain_ticks: ticks until no deleted policy was linked; None = not within the timeout.
        free_ticks: ticks until none was allocated either.
    """

    delete_tick: int
    delete_span_ticks: int = 0
    removed_by_delete: int = 0
    linked_after_delete: int | None = None
    allocated_after_delete: int | None = None
    drain_ticks: int | None = None
    free_ticks: int | None = None
    records: list[dict[str, Any]] = field(default_factory=list)
    complete: bool = False
    timed_out: bool = False

    def rel(self, rec: dict[str, Any]) -> int:
        return int(rec["tick"]) - self.delete_tick

    def series(self) -> list[tuple[int, ...]]:
        return [tuple(int(r[k]) for k in SERIES_KEYS) for r in self.records]

    def totals(self) -> dict[str, int]:
        keys = ("unlinked", "freed", "premature", "uaf", "lookups", "walked", "esp_ok", "esp_drop")
        return {k: sum(int(r[k]) for r in self.records) for k in keys}

    def walked_per_lookup(self) -> float | None:
        t = self.totals()
        return t["walked"] / t["lookups"] if t["lookups"] else None

    def feed(self, recs: list[dict[str, Any]], timeout_ticks: int) -> bool:
        """Take new ring records; True once the drain is complete or timed out."""
        for r in recs:
            if int(r["tick"]) <= self.delete_tick or self.complete:
                continue
            self.records.append(r)
            linked = r["dead_in"] + r["dead_out"] + r["alive_in"] + r["alive_out"]
            if self.drain_ticks is None and linked == 0:
                self.drain_ticks = self.rel(r)
            if self.drain_ticks is not None and r["allocated"] == 0:
                self.free_ticks = self.rel(r)
                self.complete = True
            elif self.rel(r) >= timeout_ticks:
                self.timed_out = True
        return self.complete or self.timed_out


def poll(stats: StatsEndpoint, drain: Drain, timeout_ticks: int) -> bool:
    """Fetch the ring records after the last one seen; True when done."""
    since = int(drain.records[-1]["tick"]) if drain.records else drain.delete_tick
    doc = stats.request(f"ticks {since}")
    if "error" in doc:
        raise RuntimeError(doc["error"])
    return drain.feed(doc["ticks"], timeout_ticks)
