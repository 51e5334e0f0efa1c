"""The trial's traffic: ESP keepalives that hold every policy, and traffic.json.

One sender per traffic host: this machine's, and each lab host's of a multi-host lab
(over SSH), each for the targets behind it. A sender that fails to start makes its own
targets INFRA-ERROR; the rest go on.
"""

from __future__ import annotations

import time
from typing import Any

from orchestrator import atomic
from orchestrator.errors import InfraError
from orchestrator.run.context import RunContext, Target
from orchestrator.traffic.sa import TrafficSpec
from orchestrator.traffic.sender import Pacing


def start(ctx: RunContext) -> None:
    sc = ctx.lab.scenario
    live = [t for t in ctx.live() if t.gw is not None]
    if sc.traffic == "none" or not live:
        return
    groups: dict[str, tuple[Any, list[Target]]] = {}
    for t in live:
        th = ctx.lr.traffic_host(t.name)
        if th is not None:
            groups.setdefault(th.key, (th, []))[1].append(t)
    ctx.traffic = {}
    for key, (th, ts) in sorted(groups.items()):
        sender = ctx.guard(ts[0], "traffic start", lambda _t, th=th, ts=ts: _start(ctx, th, ts))
        if sender is None:
            for t in ts[1:]:
                t.infra = ts[0].infra
        else:
            ctx.traffic[key] = (sender, [t.name for t in ts])


def _start(ctx: RunContext, th: Any, ts: list[Target]) -> Any:
    from orchestrator.traffic.run import RemoteTrafficRun, TrafficRun

    spec = TrafficSpec.merge([t.gw.plan["scenario"].spec for t in ts])  # type: ignore[union-attr]
    paced = pacing(ctx, len(spec.flows))
    workdir = ctx.run_dir / ("traffic" if not th.key else f"traffic-{th.key}")
    # recorded in state.json through the owner, so `down` stops it after a crash too
    kw: dict[str, Any] = {"netns": th.netns, "pacing": paced, "owner": ctx.lr}
    if th.lab_host is not None:
        run = RemoteTrafficRun(spec, workdir, th.lab_host, **kw)
    else:
        pcap = ctx.run_dir / "esp-sample.pcap" if ctx.trial == 1 else None
        run = TrafficRun(spec, workdir, pcap=pcap, **kw)
    where = f" from lab host {th.key}" if th.key else ""
    ctx.progress.log(f"traffic{where}: {len(spec.flows)} flows, {paced.rate or 0:.0f} pps")
    return run.start()


def pacing(ctx: RunContext, flows: int) -> Pacing:
    sc = ctx.lab.scenario
    if sc.traffic == "keepalive":
        return Pacing.keepalive(flows, sc.keepalive_ticks, ctx.tick_ms)
    return Pacing("rate", rate=float(sc.rate_pps))


def settle(ctx: RunContext) -> None:
    """One more keepalive period, so a flow touching a policy freed under it is counted."""
    if ctx.traffic and ctx.lab.scenario.traffic == "keepalive":
        time.sleep((ctx.lab.scenario.keepalive_ticks + 2) * ctx.tick_ms / 1000)


def stop(ctx: RunContext) -> None:
    if ctx.traffic is None:
        return
    for key, (sender, _) in sorted(ctx.traffic.items()):
        try:
            stats = sender.stop()
            if ctx.result is not None:
                ctx.result.traffic.append(stats.to_json())
        except InfraError as e:
            ctx.progress.log(f"traffic{f' from lab host {key}' if key else ''}: {e}")
    write_json(ctx)
    ctx.traffic = None


def write_json(ctx: RunContext) -> None:
    """Packets sent per target, from each sender's counts per gateway address."""
    from orchestrator.traffic.run import targets_report

    if not ctx.traffic:
        return
    addrs = {t.name: str(t.spec.address) for t in ctx.targets}
    doc: dict[str, Any] = {"targets": {}, "senders": {}}
    for key, (sender, names) in sorted(ctx.traffic.items()):
        stats = sender.stats()
        if stats is not None:
            part = targets_report(stats, {n: addrs[n] for n in names})
            doc["targets"] |= part["targets"]
            doc["senders"][key or "local"] = part["sender"]
    if len(doc["senders"]) == 1:
        doc["sender"] = next(iter(doc["senders"].values()))
    if doc["senders"]:
        atomic.write_json(ctx.run_dir / "traffic.json", doc, indent=None)


def check_running(ctx: RunContext, t: Target) -> None:
    """The sender that holds `t`'s policies still runs."""
    for sender, names in (ctx.traffic or {}).values():
        if t.name in names and not sender.running():
            raise InfraError("the traffic sender died", step="traffic")
