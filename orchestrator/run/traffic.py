"""The trial's traffic: ESP keepalives that hold every policy, and traffic.json.

One sender per traffic host: this machine's, and each lab host's of a multi-host lab
(over SSH), each for the targets behind it. A sender that fails to start makes its own
targets INFRA-ERROR; the rest go on.
"""

from __future__ import annotations

from typing import Any

from orchestrator import atomic
from orchestrator.errors import ConfigError, InfraError
from orchestrator.result import describe
from orchestrator.run.context import RunContext, Target
from orchestrator.traffic.sa import TrafficSpec
from orchestrator.traffic.sender import Pacing


def start(ctx: RunContext) -> None:
    """The trial's traffic, as the run's clock sends it (wallclock.py, lockstep.py)."""
    live = [t for t in ctx.live() if t.gw is not None]
    if ctx.lab.scenario.traffic == "none" or not live:
        return
    ctx.traffic = ctx.clock.traffic(ctx, live)
    ctx.traffic.start()


class Senders:
    """Senders — one sender per traffic host (this machine's, each lab host's), as one.

    A sender that fails to start makes its own targets INFRA-ERROR; the rest go on. The
    settle waits for each sender's own rounds (`senders`), so a host lost mid-run fails
    only the targets behind it.
    """

    def __init__(self, ctx: RunContext, live: list[Target]):
        self.ctx = ctx
        self.groups: dict[str, tuple[Any, list[Target]]] = {}
        for t in live:
            th = ctx.lr.traffic_host(t.name)
            if th is not None:
                self.groups.setdefault(th.key, (th, []))[1].append(t)
        self.senders: dict[str, tuple[Any, list[str]]] = {}

    def start(self) -> Senders:
        for key, (th, ts) in sorted(self.groups.items()):
            run = self.ctx.guard(ts[0], "traffic start",
                                 lambda _t, th=th, ts=ts: self._start(th, ts))  # fmt: skip
            if run is None:
                for t in ts[1:]:
                    t.infra = ts[0].infra
            else:
                self.senders[key] = (run, [t.name for t in ts])
        return self

    def _start(self, th: Any, ts: list[Target]) -> Any:
        from orchestrator.traffic.run import RemoteTrafficRun

        ctx = self.ctx
        spec = TrafficSpec.merge([t.gw.plan["scenario"].spec for t in ts])  # type: ignore[union-attr]
        paced = pacing(ctx, len(spec.flows))
        workdir = ctx.run_dir / ("traffic" if not th.key else f"traffic-{th.key}")
        # recorded in state.json through the owner, so `down` stops it after a crash too
        kw: dict[str, Any] = {"netns": th.netns, "pacing": paced, "owner": ctx.lr}
        if th.lab_host is not None:
            run = RemoteTrafficRun(spec, workdir, th.lab_host, **kw).start()
        else:
            run = local(ctx, spec, workdir, kw)
        where = f" from lab host {th.key}" if th.key else ""
        st = run.stats()
        words = describe.senders([st.to_json()] if st is not None else [])
        ctx.progress.log(f"traffic{where}: {len(spec.flows)} flows, {paced.rate or 0:.0f} pps, "
                         f"{words.removeprefix('traffic ')}")  # fmt: skip
        return run


def local(ctx: RunContext, spec: TrafficSpec, workdir: Any, kw: dict[str, Any]) -> Any:
    """This machine's sender, started: espgen where it can carry the scenario (or the lab
    asks for it), else the Python one.

    Raises:
        InfraError: `sender: native` where espgen cannot carry the scenario.
    """
    from orchestrator.traffic.nativerun import NativeRun, cannot_carry
    from orchestrator.traffic.run import TrafficRun

    pcap = ctx.run_dir / "esp-sample.pcap" if ctx.trial == 1 else None
    choice = ctx.lab.scenario.sender
    why = None if choice == "python" else cannot_carry(spec, kw["netns"])
    if choice == "native" and why is not None:
        raise InfraError(f"scenario.sender native: {why}", step="traffic start")
    if why is None and choice != "python":
        try:
            return NativeRun(spec, workdir, pcap=pcap, **kw).start()
        except ConfigError as e:  # e.g. flows over several interfaces: the Python one routes
            if choice == "native":
                raise InfraError(f"scenario.sender native: {e}", step="traffic start") from e
            ctx.progress.log(f"traffic: the native sender cannot carry it ({e})")
    return TrafficRun(spec, workdir, pcap=pcap, **kw).start()


def pacing(ctx: RunContext, flows: int) -> Pacing:
    sc = ctx.lab.scenario
    if sc.traffic == "keepalive":
        return Pacing.keepalive(flows, sc.keepalive_ticks, ctx.tick_ms)
    return Pacing("rate", rate=float(sc.rate_pps))


def senders(traffic: Any) -> dict[str, tuple[Any, list[str] | None]]:
    """Each sender by traffic host key, with its targets (None: every target)."""
    if isinstance(traffic, Senders):
        return dict(traffic.senders)
    return {} if traffic is None else {"": (traffic, None)}


def stop(ctx: RunContext) -> None:
    if ctx.traffic is None:
        return
    for key, (sender, _) in sorted(senders(ctx.traffic).items()):
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

    addrs = {t.name: str(t.spec.address) for t in ctx.targets}
    doc: dict[str, Any] = {"targets": {}, "senders": {}}
    for key, (sender, names) in sorted(senders(ctx.traffic).items()):
        stats = sender.stats()
        if stats is not None:
            part = targets_report(stats, {n: addrs[n] for n in names or addrs})
            doc["targets"] |= part["targets"]
            doc["senders"][key or "local"] = part["sender"]
    if len(doc["senders"]) == 1:
        doc["sender"] = next(iter(doc["senders"].values()))
    if doc["senders"]:
        atomic.write_json(ctx.run_dir / "traffic.json", doc, indent=None)


def check_running(ctx: RunContext, t: Target) -> None:
    """The sender that holds `t`'s policies still runs."""
    for sender, names in senders(ctx.traffic).values():
        if (names is None or t.name in names) and not sender.running():
            raise InfraError("the traffic sender died", step="traffic")
