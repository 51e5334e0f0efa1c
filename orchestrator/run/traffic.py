"""The trial's traffic: ESP keepalives that hold every policy, and traffic.json."""

from __future__ import annotations

from orchestrator import atomic
from orchestrator.errors import InfraError
from orchestrator.run.context import RunContext


def start(ctx: RunContext) -> None:
    """The trial's traffic, as the run's clock sends it (wallclock.py, lockstep.py)."""
    live = [t for t in ctx.live() if t.gw is not None]
    if ctx.lab.scenario.traffic == "none" or not live:
        return
    ctx.traffic = ctx.clock.traffic(ctx, live)
    ctx.traffic.start()


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
