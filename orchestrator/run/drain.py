"""Phase drained: every target's tick ring read until its deleted policies are gone.

Then one more keepalive period (a use after free shows on the flow's next packet),
the memory findings totalled, the traffic stopped and the trial recorded.
"""

from __future__ import annotations

from orchestrator.drain.record import poll
from orchestrator.drain.trial import trial
from orchestrator.run import judge, reference, traffic
from orchestrator.run.context import RunContext, Target
from orchestrator.wait import until

POLL_S = 0.2
# Generous: the drain's own timeout is in ticks; this only catches a clock that stopped.
STALL_S = 3600.0


def run(ctx: RunContext) -> None:
    timeout = ctx.lab.scenario.timeout_ticks
    ctx.progress.phase("drain", timeout)
    pending = [t for t in ctx.live() if t.drain is not None]
    until(lambda: not step(ctx, pending, timeout), "every drain complete", STALL_S, POLL_S)
    traffic.settle(ctx)
    ctx.each("settle", lambda t: totals(ctx, t))
    traffic.stop(ctx)
    for t in ctx.live():
        if t.drain is not None:
            t.trials.append(trial(ctx.trial, t.drain, t.unobservable(ctx.lab.scenario.delete)))
    if ctx.trial == 1:
        ctx.each("spddump after", lambda t: reference.dump(ctx, t, "after"))
    judge.summarise(ctx)  # the exporter shows this drain while the lab is still up


def step(ctx: RunContext, pending: list[Target], timeout: int) -> list[Target]:
    """Poll each pending target once; returns (and keeps in `pending`) those not done."""
    for t in list(pending):
        done = ctx.guard(t, "drain", lambda t: poll(ctx.stats(t), t.drain, timeout))
        if done or not t.alive:
            pending.remove(t)
    ticks = [len(t.drain.after_delete()) for t in pending if t.drain]
    ctx.progress.update("drain", min(ticks) if ticks else timeout)
    traffic.write_json(ctx)
    return pending


def totals(ctx: RunContext, t: Target) -> None:
    assert t.drain is not None
    spd = ctx.stats(t).request("stats")["spd"]
    t.drain.premature_frees = spd["premature_frees"] - t.drain.base_premature
    t.drain.use_after_free = spd["use_after_free"] - t.drain.base_uaf
