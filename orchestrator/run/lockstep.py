"""LockStep — spdlab runs every tick of a deterministic lab itself.

Each target's netkeyd runs with tick_ms 0: its virtual clock moves only on the admin
`tick` command. Per target, from the clock t0 at which its trial's traffic starts:

- keepalive round k (every flow once) is sent at tick t0 + k × keepalive_ticks, and
  netkeyd has counted every packet of it (ESP ok + dropped) before the next tick runs;
- the delete is sent between two ticks: nothing ticks while it runs;
- the drain is read from the records the `tick` command answers with, one tick at a time;
- the settle is keepalive_ticks + 2 ticks after the drain, so one round falls in it.

Each target's schedule depends on its own state only: its series and measures are the
same whichever other targets the lab holds, and the same in every run of one seed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from orchestrator.targets.endpoints import clock
from orchestrator.wait import WaitTimeout, until

if TYPE_CHECKING:
    from orchestrator.run.context import RunContext, Target

ROUND_S = 60.0  # a generous limit for netkeyd to read one round; never a speed measure
SETTLE_TICKS = 2


@dataclass
class Schedule:
    """One target's keepalive schedule in its own ticks."""

    t0: int  # the clock when the trial's traffic started: round 0
    now: int
    sent_at: int | None = None  # the clock of the last round sent


def processed(stats: dict[str, Any]) -> int:
    """ESP packets netkeyd has read: accepted or dropped for any reason."""
    esp = stats["esp"]
    return int(esp["ok"]) + sum(int(n) for n in esp["drop"].values())


class LockStep:
    """LockStep — ticks, keepalive rounds and the delete in one order, run by spdlab."""

    deterministic = True

    def __init__(self) -> None:
        self.schedules: dict[str, Schedule] = {}

    def traffic(self, ctx: RunContext, live: list[Target]) -> Any:
        """The trial's rounds: in-process, a sender per target; round 0 is due now."""
        from orchestrator.traffic.stepped import SteppedTraffic

        for t in live:
            now = ctx.guard(t, "traffic", lambda t: clock(ctx.stats(t).request("stats")))
            if now is not None:
                self.schedules[t.name] = Schedule(now, now)
        specs = {t.name: t.gw.plan["scenario"].spec for t in live if t.alive}  # type: ignore[union-attr]
        ctx.progress.log(f"traffic: {sum(len(s.flows) for s in specs.values())} flows, "
                         f"one round every {ctx.lab.scenario.keepalive_ticks} ticks")  # fmt: skip
        pcap = ctx.run_dir / "esp-sample.pcap" if ctx.trial == 1 else None
        return SteppedTraffic(specs, ctx.run_dir / "traffic", ctx.lr.traffic_netns(), pcap)

    def limit(self, ctx: RunContext) -> int:
        sc = ctx.lab.scenario
        idle = max(t.flow_idle_ticks for t in ctx.lab.targets)
        return sc.timeout_ticks + idle + sc.keepalive_ticks

    def until(self, ctx: RunContext, t: Target, cond: Callable[[], object], what: str,
              timeout_s: float) -> Any:  # fmt: skip
        """Step t's clock until cond holds (its value): the ticks taken are part of the result."""
        limit = self.limit(ctx)
        for _ in range(limit + 1):
            self.keepalive(ctx, t)
            if got := cond():
                return got
            self.tick(ctx, t)
        raise RuntimeError(f"{what}: not within {limit} ticks")

    def drain(self, ctx: RunContext, pending: list[Target]) -> None:
        """Each target in turn: tick until its drain is complete, then settle."""
        ctx.progress.phase("drain", len(pending))
        for t in pending:
            ctx.guard(t, "drain", lambda t: self._drain(ctx, t))
            ctx.progress.advance("drain", 1)

    def _drain(self, ctx: RunContext, t: Target) -> None:
        d, sc = t.drain, ctx.lab.scenario
        assert d is not None
        done = False
        while not done:
            self.keepalive(ctx, t)
            done = d.feed(self.tick(ctx, t), sc.timeout_ticks)
        if ctx.traffic is not None and sc.traffic == "keepalive":
            for _ in range(sc.keepalive_ticks + SETTLE_TICKS):
                self.keepalive(ctx, t)
                self.tick(ctx, t)

    def tick(self, ctx: RunContext, t: Target) -> list[dict[str, Any]]:
        """One tick of t's timer; its record."""
        doc = ctx.stats(t).request("tick 1")
        if "error" in doc:
            raise RuntimeError(f"tick: {doc['error']}")
        if t.name in self.schedules:
            self.schedules[t.name].now = clock(doc)
        return list(doc["ticks"])

    def keepalive(self, ctx: RunContext, t: Target) -> None:
        """The round due at t's clock, if one is and it was not sent; then await its reading."""
        s = self.schedules.get(t.name)
        due = s is not None and (s.now - s.t0) % ctx.lab.scenario.keepalive_ticks == 0
        if ctx.traffic is None or s is None or not due or s.sent_at == s.now:
            return
        stats = ctx.stats(t)
        base = processed(stats.request("stats"))

        def read(sent: int) -> None:
            what = f"{t.name}: netkeyd reads the round of tick {s.now}"
            try:
                until(lambda: processed(stats.request("stats")) >= base + sent, what, ROUND_S,
                      0.002)  # fmt: skip
            except WaitTimeout as e:
                raise RuntimeError(f"{e} (packets lost: the run is not deterministic)") from None

        ctx.traffic.round(t.name, read)
        s.sent_at = s.now
