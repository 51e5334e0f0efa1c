"""Phase drained: every target's ticks read until its deleted policies are gone.

Then one more keepalive round (a use after free shows on the flow's next packet),
the memory findings totalled, the traffic stopped and the trial recorded. The run's
clock reads the ticks: netkeyd's timer polled (wallclock.py) or spdlab's (lockstep.py).
"""

from __future__ import annotations

from orchestrator.drain.trial import trial
from orchestrator.run import judge, reference, traffic
from orchestrator.run.context import RunContext, Target


def run(ctx: RunContext) -> None:
    ctx.clock.drain(ctx, [t for t in ctx.live() if t.drain is not None])
    ctx.each("totals", lambda t: totals(ctx, t))
    traffic.stop(ctx)
    for t in ctx.live():
        if t.drain is not None:
            t.trials.append(trial(ctx.trial, t.drain, t.unobservable(ctx.lab.scenario.delete)))
    if ctx.trial == 1:
        ctx.each("spddump after", lambda t: reference.dump(ctx, t, "after"))
    judge.summarise(ctx)  # the exporter shows this drain while the lab is still up


def totals(ctx: RunContext, t: Target) -> None:
    assert t.drain is not None
    spd = ctx.stats(t).request("stats")["spd"]
    t.drain.premature_frees = spd["premature_frees"] - t.drain.base_premature
    t.drain.use_after_free = spd["use_after_free"] - t.drain.base_uaf
