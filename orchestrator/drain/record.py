"""Per-tick drain records of one target, read from its tick ring.

The records start at the tick the delete was issued, so work the timer did
while a long delete was still being sent is counted.  Drain ticks count
from the tick the delete returned: how long the table stays dirty after
the operator's command came back.  Nothing between two polls is missed:
the ring holds every tick.  docs/MEASURES.md defines every measure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from orchestrator.targets.protocols import StatsEndpoint

# The table's side of a drain: what a patch to the SPD can change.  Frees and
# allocations also follow when traffic lets go, so they stay out of it.
SERIES_KEYS = ("unlinked", "dead_in", "dead_out", "alive_in", "alive_out")
TOTAL_KEYS = ("unlinked", "freed", "premature", "uaf", "lookups", "walked", "esp_ok", "esp_drop")


def linked(rec: dict[str, Any]) -> int:
    return int(rec["dead_in"] + rec["dead_out"] + rec["alive_in"] + rec["alive_out"])


@dataclass
class Drain:
    """What one target did after its mass delete.

    Attributes:
        issue_tick: the target's clock when the delete was issued.
        delete_tick: its clock when the delete returned (relative tick 0).
        survivors: policies that stay linked by design (SPDUPDATE's replacements).
        removed_by_delete: policies the delete's own messages unlinked.
        timer_unlinked_during_delete: the timer's unlinks while the delete was sent;
            None when the target cannot tell them apart.
        drain_ticks: ticks after delete_tick until no deleted policy was linked;
            None = not within the timeout.
        free_ticks: ticks after delete_tick until none was allocated either.
    """

    issue_tick: int
    delete_tick: int
    survivors: int = 0
    removed_by_delete: int = 0
    timer_unlinked_during_delete: int | None = 0
    linked_after_delete: int | None = None
    allocated_after_delete: int | None = None
    drain_ticks: int | None = None
    free_ticks: int | None = None
    records: list[dict[str, Any]] = field(default_factory=list)
    complete: bool = False
    timed_out: bool = False
    # Memory findings from the delete on, including the flows' touches after the drain.
    base_premature: int = 0
    base_uaf: int = 0
    premature_frees: int = 0
    use_after_free: int = 0

    @property
    def delete_span_ticks(self) -> int:
        return self.delete_tick - self.issue_tick

    @property
    def drain_ticks_from_issue(self) -> int | None:
        return None if self.drain_ticks is None else self.drain_ticks + self.delete_span_ticks

    def after_delete(self) -> list[dict[str, Any]]:
        return [r for r in self.records if int(r["tick"]) > self.delete_tick]

    def series(self) -> list[list[int]]:
        """The table's per-tick drain after the delete returned, up to its end."""
        end = None if self.drain_ticks is None else self.delete_tick + self.drain_ticks
        return [
            [int(r[k]) for k in SERIES_KEYS]
            for r in self.after_delete()
            if end is None or int(r["tick"]) <= end
        ]

    def totals(self) -> dict[str, int]:
        return {k: sum(int(r[k]) for r in self.records) for k in TOTAL_KEYS}

    def walked_per_lookup(self) -> float | None:
        t = self.totals()
        return t["walked"] / t["lookups"] if t["lookups"] else None

    def feed(self, recs: list[dict[str, Any]], timeout_ticks: int) -> bool:
        """Take new ring records; True once the drain is complete or timed out."""
        for r in recs:
            if self._take(r):
                self._judge_tick(r, int(r["tick"]) - self.delete_tick, timeout_ticks)
        return self.complete or self.timed_out

    def _take(self, r: dict[str, Any]) -> bool:
        """Keep r if it is new; True if it falls after the delete returned."""
        tick = int(r["tick"])
        if tick <= self.issue_tick or self.complete:
            return False
        if self.records and tick <= int(self.records[-1]["tick"]):
            return False
        self.records.append(r)
        return tick > self.delete_tick

    def _judge_tick(self, r: dict[str, Any], rel: int, timeout_ticks: int) -> None:
        if self.drain_ticks is None and linked(r) <= self.survivors:
            self.drain_ticks = rel
        if self.drain_ticks is not None and r["allocated"] <= self.survivors:
            self.free_ticks = rel
            self.complete = True
        elif rel >= timeout_ticks:
            self.timed_out = True


def poll(stats: StatsEndpoint, drain: Drain, timeout_ticks: int) -> bool:
    """Fetch the ring records after the last one seen; True when done."""
    since = int(drain.records[-1]["tick"]) if drain.records else drain.issue_tick
    doc = stats.request(f"ticks {since}")
    if "error" in doc:
        raise RuntimeError(doc["error"])
    return drain.feed(doc["ticks"], timeout_ticks)
