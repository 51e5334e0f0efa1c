"""The trial's traffic: ESP keepalives that hold every policy, and traffic.json."""

from __future__ import annotations

import time

from orchestrator import atomic
from orchestrator.errors import InfraError
from orchestrator.run.context import RunContext
from orchestrator.traffic.sa import TrafficSpec
from orchestrator.traffic.sender import Pacing


def start(ctx: RunContext) -> None:
    from orchestrator.traffic.run import TrafficRun

    sc = ctx.lab.scenario
    live = [t for t in ctx.live() if t.gw is not None]
    if sc.traffic == "none" or not live:
        return
    spec = TrafficSpec.merge([t.gw.plan["scenario"].spec for t in live])  # type: ignore[union-attr]
    paced = pacing(ctx, len(spec.flows))
    ctx.traffic = TrafficRun(
        spec,
        ctx.run_dir / "traffic",
        netns=ctx.lr.traffic_netns(),
        pacing=paced,
        pcap=ctx.run_dir / "esp-sample.pcap" if ctx.trial == 1 else None,
        owner=ctx.lr,  # recorded in state.json, so `down` stops it after a crash too
    )
    ctx.progress.log(f"traffic: {len(spec.flows)} flows, {paced.rate or 0:.0f} pps")
    ctx.traffic.start()


def pacing(ctx: RunContext, flows: int) -> Pacing:
    sc = ctx.lab.scenario
    if sc.traffic == "keepalive":
        return Pacing.keepalive(flows, sc.keepalive_ticks, ctx.tick_ms)
    return Pacing("rate", rate=float(sc.rate_pps))


def settle(ctx: RunContext) -> None:
    """One more keepalive period, so a flow touching a policy freed under it is counted."""
    if ctx.traffic is not None and ctx.lab.scenario.traffic == "keepalive":
        time.sleep((ctx.lab.scenario.keepalive_ticks + 2) * ctx.tick_ms / 1000)


def stop(ctx: RunContext) -> None:
    if ctx.traffic is None:
        return
    try:
        stats = ctx.traffic.stop()
        if ctx.result is not None:
            ctx.result.traffic.append(stats.to_json())
    except InfraError as e:
        ctx.progress.log(f"traffic: {e}")
    write_json(ctx)
    ctx.traffic = None


def write_json(ctx: RunContext) -> None:
    """Packets sent per target, from the sender's counts per gateway address."""
    from orchestrator.traffic.run import targets_report

    stats = ctx.traffic.stats() if ctx.traffic is not None else None
    if stats is None:
        return
    addrs = {t.name: str(t.spec.address) for t in ctx.targets}
    atomic.write_json(ctx.run_dir / "traffic.json", targets_report(stats, addrs), indent=None)


def check_running(ctx: RunContext) -> None:
    if ctx.traffic is not None and not ctx.traffic.running():
        raise InfraError("the traffic sender died", step="traffic")
