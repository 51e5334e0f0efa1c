"""WallClock — each netkeyd's own timer runs the ticks (`tick_ms`); spdlab polls.

The default, for realism: where the delete's messages and the keepalives fall between
two ticks varies from run to run, and the trial statistics describe that spread.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from orchestrator.drain.record import poll
from orchestrator.targets.endpoints import clock
from orchestrator.wait import WaitTimeout, until

if TYPE_CHECKING:
    from orchestrator.run.context import RunContext, Target

POLL_S = 0.2
# Generous: the drain's own timeout is in ticks; this only catches a clock that stopped.
STALL_S = 3600.0
SETTLE_TICKS = 2  # after the last round: netkeyd reads what is queued before `stats`


class WallClock:
    """WallClock — netkeyd's timer ticks; traffic is paced in wall time."""

    deterministic = False

    def traffic(self, ctx: RunContext, live: list[Target]) -> Any:
        """The trial's senders: one subprocess per traffic host for its targets' flows."""
        from orchestrator.run.traffic import Senders

        return Senders(ctx, live)

    def until(self, ctx: RunContext, t: Target, cond: Callable[[], object], what: str,
              timeout_s: float) -> Any:  # fmt: skip
        try:
            return until(cond, what, timeout_s, interval=0.2)
        except WaitTimeout:
            raise RuntimeError(f"{what}: not within {timeout_s:.0f} s") from None

    def drain(self, ctx: RunContext, pending: list[Target]) -> None:
        """Poll every target's tick ring until its drain is complete, then settle."""
        from orchestrator.run import traffic

        timeout = ctx.lab.scenario.timeout_ticks
        ctx.progress.phase("drain", timeout)
        until(lambda: not self._step(ctx, pending, timeout), "every drain complete", STALL_S,
              POLL_S)  # fmt: skip
        drained = [t for t in ctx.live() if t.drain is not None]
        if drained and ctx.traffic is not None and ctx.lab.scenario.traffic == "keepalive":
            since = time.time()
            for run, names in traffic.senders(ctx.traffic).values():
                mine = [t for t in drained if t.alive and (names is None or t.name in names)]
                try:
                    if mine:
                        self._rounds(ctx, run, since)
                except WaitTimeout as e:  # the sender stalled: its trials cannot count touches
                    msg = f"settle: {e}"
                    ctx.each("settle", lambda t, msg=msg: _fail(msg), mine)
            traffic.write_json(ctx)
            ctx.each("settle", lambda t: self._ticks(ctx, t, SETTLE_TICKS))

    def _step(self, ctx: RunContext, pending: list[Target], timeout: int) -> list[Target]:
        """Poll each pending target once; returns (and keeps in `pending`) those not done."""
        from orchestrator.run import traffic

        for t in list(pending):
            done = ctx.guard(t, "drain", lambda t: poll(ctx.stats(t), t.drain, timeout))
            if done or not t.alive:
                pending.remove(t)
        ticks = [len(t.drain.after_delete()) for t in pending if t.drain]
        ctx.progress.update("drain", min(ticks) if ticks else timeout)
        traffic.write_json(ctx)
        return pending

    def _rounds(self, ctx: RunContext, run: Any, since: float) -> None:
        """Until every flow of `run` has sent once more after the drain, so that a flow
        touching a policy freed under it is counted: the sender's round counter two whole
        rounds past its first report after `since` (the round in progress may have begun
        before); then the settle runs SETTLE_TICKS of each target's clock."""
        period_s = ctx.lab.scenario.keepalive_ticks * ctx.tick_ms / 1000
        limit = 60.0 + 3 * period_s

        def report() -> Any:
            s = run.stats()
            return s if s is not None and s.at > since else None

        first = until(report, "a traffic report after the drain", limit, 0.05, run.running)
        until(lambda: (s := report()) is not None and s.rounds >= first.rounds + 2,
              "one whole keepalive round after the drain", limit, 0.05, run.running)  # fmt: skip

    def _ticks(self, ctx: RunContext, t: Target, n: int) -> None:
        stats = ctx.stats(t)
        end = clock(stats.request("stats")) + n
        until(lambda: clock(stats.request("stats")) >= end, f"{t.name}: {n} more ticks",
              STALL_S, 0.01)  # fmt: skip


def _fail(message: str) -> None:
    raise RuntimeError(message)
