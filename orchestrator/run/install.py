"""Phase installed: every target gets its SAs and policies, as its delete strategy says.

From the second trial on, the previous trial's SAs and policies go first.
"""

from __future__ import annotations

import math

from orchestrator.delete import Gateway
from orchestrator.delete.base import check
from orchestrator.pfkey import messages
from orchestrator.run.context import RunContext, Target
from orchestrator.targets import registry, spdpoll
from orchestrator.traffic import scenario as traffic_scenario

SPI_STRIDE = 0x100000  # each target's SPIs: distinct, so sequence state never collides
SPI_SLOTS = 0xFF0  # strides that fit below 2^32 (scenarios hold at most 10^6 policies)
SEED_STRIDE = 1 << 16  # each target's keys come from its own stream of the seed
RESET_TIMEOUT_S = 30.0


def run(ctx: RunContext) -> None:
    step = f"install (trial {ctx.trial})"
    ctx.progress.phase(step, len(ctx.live()))
    ctx.each(step, lambda t: install(ctx, t))


def install(ctx: RunContext, t: Target) -> None:
    if ctx.trial > 1:
        reset(ctx, t)
    sc = scenario(ctx, t)
    ep = ctx.lr.pfkey_endpoint(t.name)
    t.gw = Gateway(ep.connect, ctx.stats(t), t.spec.tick_ms, sc.policy_msgs, sc.delete_msgs)
    t.gw.plan["scenario"] = sc
    t.drain = None
    with ep.connect() as c:
        check(c.pipeline(sc.sa_msgs), "ADD")
    ctx.strategy.install(t.gw)


def scenario(ctx: RunContext, t: Target) -> traffic_scenario.Scenario:
    sc = ctx.lab.scenario
    return traffic_scenario.generate(
        sc.policies,
        str(ctx.lab.traffic_host.address),
        str(t.spec.address),
        alg=sc.algorithm,
        mode=sc.mode,
        natt=sc.natt,
        spi_base=spi_base(sc.seed, t.spec.index),
        seed=sc.seed * SEED_STRIDE + t.spec.index,
        outbound=sc.traffic != "none" and t.spec.kind in registry.KIND_GUEST_FLOWS,
    )


def spi_base(seed: int, index: int) -> int:
    """Target `index`'s first SPI under `seed`: a slot of SPI_STRIDE SPIs of its own."""
    return traffic_scenario.SPI_BASE + (seed + index) % SPI_SLOTS * SPI_STRIDE


def reset(ctx: RunContext, t: Target) -> None:
    """Remove every SA and policy, and wait until nothing is allocated.

    Rounds go on while policies stay allocated (held, or DEAD until the timer), as long
    as each frees some within the timeout. On a real kernel, whose dump lists linked
    policies only, those a flush left (a canary's flush removes one a call) are deleted
    by id: a round, not one flush and one full observation per policy.
    """
    stats = ctx.stats(t)
    with ctx.lr.pfkey_endpoint(t.name).connect() as c:
        c.request(messages.flush_sa())
        left = math.inf
        while left:

            def fewer(before: float = left) -> tuple[int] | None:
                c.request(messages.spdflush())
                st = stats.request("stats")
                if st.get("resolution") == spdpoll.RESOLUTION and any(st["spd"]["alive"].values()):
                    ids = [e.policy.id for e in c.spddump() if e.policy is not None]
                    c.pipeline(messages.spddelete2(i) for i in ids)  # an error: gone already
                    st = stats.request("stats")
                n = int(st["spd"]["allocated"])
                return (n,) if n < before else None

            (left,) = ctx.clock.until(ctx, t, fewer, "every policy of the last trial freed",
                                      RESET_TIMEOUT_S)  # fmt: skip
