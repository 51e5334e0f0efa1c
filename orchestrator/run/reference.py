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

# No policy newly referenced for this long: the traffic is not reaching them. The total
# is unbounded while each round references more (8 TCG guests of 4000 policies take minutes).
STALL_S = 60.0


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
    """Until every policy is in use, as long as each wait of STALL_S sees more of them."""
    best = (-1, 0)

    def more() -> str | None:
        nonlocal best
        now = referenced(ctx, t)
        if now[1] and now[0] == now[1] >= ctx.lab.scenario.policies:
            return "all"
        grew, best = now[0] > best[0], max(best, now)
        return "more" if grew else None

    try:
        while ctx.clock.until(ctx, t, more, "every policy referenced", STALL_S) != "all":
            pass
    except RuntimeError as e:
        raise RuntimeError(f"{e}: {best[0]} of {best[1]} in use, and no more since") from None


def referenced(ctx: RunContext, t: Target) -> tuple[int, int]:
    """(policies in use, policies in the SPD) by one SPDDUMP."""
    with ctx.lr.pfkey_endpoint(t.name).connect() as c:
        entries = c.spddump()
    traffic.check_running(ctx, t)
    traffic.write_json(ctx)
    return sum(used(t, e) for e in entries), len(entries)


def used(t: Target, e: Msg) -> bool:
    cur = e.get(ExtType.LIFETIME_CURRENT)
    pol = e.policy
    dir = pol.dir if pol is not None else 0
    return registry.in_use(t.spec.kind, e.reserved, getattr(cur, "usetime", 0), dir)


def dump(ctx: RunContext, t: Target, when: str) -> None:
    with ctx.lr.pfkey_endpoint(t.name).connect() as c:
        text = format_spd_dump(c.spddump())
    ctx.write_text(ctx.target_dir(t) / f"spddump-{when}.txt", text)
