"""Phase deleted: every target's mass delete, by the scenario's strategy.

What the delete's own messages unlinked is `removed_by_delete`; the timer's unlinks
while they were being sent are `timer_unlinked_during_delete` (docs/MEASURES.md).
"""

from __future__ import annotations

from typing import Any

from orchestrator.delete import Span
from orchestrator.drain.record import Drain
from orchestrator.run.context import RunContext, Target


def run(ctx: RunContext) -> None:
    ctx.progress.phase("delete", len(ctx.live()))
    ctx.each("delete", lambda t: delete(ctx, t))


def delete(ctx: RunContext, t: Target) -> None:
    assert t.gw is not None
    span = ctx.strategy.delete(t.gw)
    t.drain = drain_of(span, ctx.strategy.survivors(t.gw))


def drain_of(span: Span, survivors: int) -> Drain:
    b = span.before["spd"]
    d = Drain(issue_tick=span.issue_tick, delete_tick=span.delete_tick, survivors=survivors,
              base_premature=b["premature_frees"], base_uaf=b["use_after_free"])  # fmt: skip
    if span.after is not None:
        _after(d, b, span.after["spd"])
    return d


def _after(d: Drain, b: dict[str, Any], a: dict[str, Any]) -> None:
    unlinked = a["unlinked"] - b["unlinked"]
    timer = a["timer_unlinked"] - b["timer_unlinked"] if "timer_unlinked" in a else None
    d.timer_unlinked_during_delete = timer
    d.removed_by_delete = unlinked - (timer or 0)
    d.linked_after_delete = sum(a["alive"].values()) + sum(a["dead"].values())
    d.allocated_after_delete = a["allocated"]
    if d.linked_after_delete <= d.survivors:
        d.drain_ticks = 0
