"""Expire on a real kernel: hard lifetimes in the kernel's own seconds, ending on one second.

A kernel observed by SPDDUMP polling (`"resolution": "spddump-poll"`) has two clocks:
the poller's ticks, and the kernel's wall clock, in which af_key's lifetimes count
(Linux: `xfrm_policy_timer()` deletes a policy once add_time + hard ≤ now, in seconds).
Every SPDADD or SPDUPDATE reply carries the policy's add_time (LIFETIME_CURRENT), so
the replies tell the kernel's clock: no host clock is trusted (a TCG guest's lags).

The policies are installed without a lifetime, since other targets may still be installing
long after this one. The delete replaces each in place (SPDUPDATE keeps its index) with
the hard lifetime that ends on second T, re-replacing any whose reply shows the clock
ticked before it landed, until all end on T. It returns once the kernel's clock is past
T + 1 + MARGIN_S: a policy inserted at a fraction of a second dies that much after T,
and relative tick 0 of the drain is the first observation after every one is due.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from orchestrator.delete.base import Gateway, Span, check
from orchestrator.errors import InfraError
from orchestrator.pfkey.client import PfkeyClient
from orchestrator.pfkey.codec import Lifetime, Msg
from orchestrator.pfkey.wire import ExtType, MsgType
from orchestrator.targets import endpoints
from orchestrator.wait import until

RESOLUTION = "spddump-poll"
BATCH = 32  # messages per reading of the kernel's clock
LEAD_S = 5  # seconds before T, on top of twice the install's own duration
MARGIN_S = 1  # a guest's timers may run late under TCG
REALIGN_TRIES = 20


def polled(gw: Gateway) -> bool:
    """Is the target a kernel observed by SPDDUMP polling (its clock is not the ticks)?"""
    return gw.stats.request("stats").get("resolution") == RESOLUTION


@dataclass
class KernelClock:
    """The kernel's wall clock as the replies show it: host time minus a fixed offset.

    Each reply gives an add_time ≤ the kernel's now when the reply arrived, so host time
    at arrival minus add_time bounds the offset from above; the smallest bound seen is the
    estimate, and `now()` never runs ahead of the kernel.
    """

    offset: float = float("inf")
    latest: int = 0  # the newest add_time seen
    first: int = 0  # the oldest, over the install

    def saw(self, replies: list[Msg]) -> None:
        arrived = time.time()
        for r in replies:
            cur = r.exts.get(ExtType.LIFETIME_CURRENT)
            if cur is None:
                raise InfraError("the kernel's SPDADD reply has no current lifetime")
            t = int(cur.addtime)  # type: ignore[attr-defined]
            self.first = min(self.first or t, t)
            self.latest = max(self.latest, t)
            self.offset = min(self.offset, arrived - t)

    def now(self) -> float:
        return time.time() - self.offset


@dataclass
class Aligned:
    """Lifetimes that end on second T, sent in batches with the kernel's clock read between."""

    c: PfkeyClient
    clock: KernelClock
    expiry: int
    late: list[Msg] = field(default_factory=list)

    def send(self, msgs: list[Msg]) -> None:
        """SPDUPDATE each with hard = T - now; the ones that landed a second late go to `late`."""
        for i in range(0, len(msgs), BATCH):
            hard = self.expiry - self.clock.latest
            if hard < 1:
                raise InfraError(f"the kernel's clock reached second {self.expiry} before "
                                 "every lifetime was set")  # fmt: skip
            batch = [_with_hard(m, hard) for m in msgs[i : i + BATCH]]
            replies = self.c.pipeline(batch)
            check(replies, "SPDUPDATE")
            self.clock.saw(replies)
            self.late += [m for m, r in zip(msgs[i : i + BATCH], replies, strict=True)
                          if _dies_at(r) != self.expiry]  # fmt: skip


def install(gw: Gateway) -> None:
    """SPDADD without lifetimes, in batches, reading the kernel's clock from the replies."""
    clock = KernelClock()
    with gw.pfkey() as c:
        for i in range(0, len(gw.policy_msgs), BATCH):
            replies = c.pipeline(gw.policy_msgs[i : i + BATCH])
            check(replies, "SPDADD", gw.ids)
            clock.saw(replies)
    gw.plan["kernel_clock"] = clock


def delete(gw: Gateway) -> Span:
    """Every lifetime set to end on one second T; returns after T + 1 + MARGIN_S."""
    clock: KernelClock = gw.plan["kernel_clock"]
    took = clock.latest - clock.first + 1
    before = gw.stats.request("stats")
    with gw.pfkey() as c:
        clock.latest = int(clock.now())
        aligned = Aligned(c, clock, clock.latest + LEAD_S + 2 * took)
        todo = list(gw.policy_msgs)
        for _ in range(REALIGN_TRIES):
            aligned.late = []
            aligned.send(todo)
            if not aligned.late:
                break
            todo = aligned.late
        else:
            raise InfraError(f"lifetimes did not end on one second after {REALIGN_TRIES} tries")
    gw.plan["expiry_second"] = aligned.expiry
    done = aligned.expiry + 1 + MARGIN_S
    until(lambda: clock.now() >= done, f"the kernel's clock to pass second {done}",
          timeout=aligned.expiry - clock.now() + 60)  # fmt: skip
    after = gw.stats.request("stats")
    return Span(endpoints.clock(before), endpoints.clock(after), before, None)


def _dies_at(m: Msg) -> int:
    """Linux deletes a policy once add_time + hard <= now."""
    cur, hard = m.exts[ExtType.LIFETIME_CURRENT], m.exts[ExtType.LIFETIME_HARD]
    return int(cur.addtime) + int(hard.addtime)  # type: ignore[union-attr]


def _with_hard(m: Msg, addtime: int) -> Msg:
    exts = dict(m.exts)
    exts[ExtType.LIFETIME_HARD] = Lifetime(addtime=addtime)
    return Msg(MsgType.X_SPDUPDATE, exts=exts)
