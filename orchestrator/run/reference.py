"""Phase referenced: traffic uses every policy on every target, as SPDDUMP shows it.

netkeyd: refcnt >= 2, a flow's cached reference. A real Linux kernel (qemu): the usetime
of the policy's CURRENT lifetime, which the kernel stamps on every check of a packet
against it (orchestrator.kinds.in_use).

With `traffic: none` nothing holds them, and the phase only records the dump.
"""

from __future__ import annotations

from orchestrator.errors import InfraError
from orchestrator.pfkey.codec import Msg
from orchestrator.pfkey.fmt import format_spd_dump
from orchestrator.pfkey.wire import ExtType
from orchestrator.run import traffic
from orchestrator.run.context import RunContext, Target
from orchestrator.targets import registry

TIMEOUT_S = 60.0


def run(ctx: RunContext) -> None:
    traffic.start(ctx)
    if ctx.lab.scenario.traffic != "none":
        ctx.each("guest flows", lambda t: guest_flows(ctx, t))
    step = f"reference (trial {ctx.trial})"
    ctx.progress.phase(step, len(ctx.live()))
    if ctx.lab.scenario.traffic != "none":
        ctx.each(step, lambda t: wait_referenced(ctx, t))
    if ctx.trial == 1:
        ctx.each("spddump before", lambda t: dump(ctx, t, "before"))


def guest_flows(ctx: RunContext, t: Target) -> None:
    """A gateway that sends flows of its own (a qemu guest) starts one per outbound policy,
    a packet each keepalive round."""
    assert t.gw is not None
    flows = t.gw.plan["scenario"].guest_flows
    if not flows:
        return
    interval = ctx.lab.scenario.keepalive_ticks * max(t.spec.tick_ms, 1)
    path = ctx.target_dir(t) / "guest-flows.txt"
    ctx.write_text(path, "".join([f"{interval}\n", *(f"{g.line()}\n" for g in flows)]))
    answer = ctx.stats(t).request(f"guestflows {path.resolve()}")
    if "error" in answer:
        raise InfraError(f"guest flows: {answer['error']}", step="traffic")


def wait_referenced(ctx: RunContext, t: Target) -> None:
    ctx.clock.until(ctx, t, lambda: referenced(ctx, t), "every policy referenced", TIMEOUT_S)


def referenced(ctx: RunContext, t: Target) -> bool:
    with ctx.lr.pfkey_endpoint(t.name).connect() as c:
        entries = c.spddump()
    traffic.check_running(ctx, t)
    traffic.write_json(ctx)
    n = ctx.lab.scenario.policies
    return len(entries) >= n and all(used(t, e) for e in entries)


def used(t: Target, e: Msg) -> bool:
    cur = e.get(ExtType.LIFETIME_CURRENT)
    pol = e.policy
    dir = pol.dir if pol is not None else 0
    return registry.in_use(t.spec.kind, e.reserved, getattr(cur, "usetime", 0), dir)


def dump(ctx: RunContext, t: Target, when: str) -> None:
    with ctx.lr.pfkey_endpoint(t.name).connect() as c:
        text = format_spd_dump(c.spddump())
    ctx.write_text(ctx.target_dir(t) / f"spddump-{when}.txt", text)
