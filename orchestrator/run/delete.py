"""Phase deleted: every target's mass delete, by the scenario's strategy.

What the delete's own messages unlinked is `removed_by_delete`; the timer's unlinks
while they were being sent are `timer_unlinked_during_delete`; a flow letting go of a
dead policy is neither (docs/MEASURES.md).
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
    held(ctx, span)
    t.drain = drain_of(span, ctx.strategy.survivors(t.gw))


def held(ctx: RunContext, span: Span) -> None:
    """Traffic still held every policy when the delete began. A sender that falls behind
    (a loaded machine, wall-clock mode) lets flows idle out after `referenced`, and the
    delete would hit policies nothing uses: that trial measures something else."""
    n = ctx.lab.scenario.policies
    flows = span.before.get("flows", {}).get("open")  # netkeyd only: a kernel has no flows
    if ctx.lab.scenario.traffic != "none" and flows is not None and flows < n:
        raise RuntimeError(f"{flows} of {n} flows open when the delete began: the traffic "
                           "sender fell behind and the others idled out, so not every "
                           "policy was in use")  # fmt: skip


def drain_of(span: Span, survivors: int) -> Drain:
    b = span.before["spd"]
    d = Drain(issue_tick=span.issue_tick, delete_tick=span.delete_tick, survivors=survivors,
              base_premature=b["premature_frees"], base_uaf=b["use_after_free"])  # fmt: skip
    if span.after is not None:
        _after(d, b, span.after["spd"])
    return d


def _delta(b: dict[str, Any], a: dict[str, Any], key: str) -> int | None:
    return a[key] - b[key] if key in a and key in b else None


def _after(d: Drain, b: dict[str, Any], a: dict[str, Any]) -> None:
    timer = _delta(b, a, "timer_unlinked")
    d.timer_unlinked_during_delete = timer
    # netkeyd counts what messages unlinked; a target that cannot tell gives every unlink.
    msgs = _delta(b, a, "msg_unlinked")
    d.removed_by_delete = msgs if msgs is not None else a["unlinked"] - b["unlinked"]
    d.linked_after_delete = sum(a["alive"].values()) + sum(a["dead"].values())
    d.allocated_after_delete = a["allocated"]
    if d.linked_after_delete <= d.survivors:
        d.drain_ticks = 0
