"""Expire — no message: every policy's hard lifetime ends on the same tick.

On a kernel observed by SPDDUMP polling the lifetimes count in the kernel's own seconds,
not in ticks: orchestrator.delete.kernelclock sets them.
"""

from __future__ import annotations

from orchestrator.delete import kernelclock
from orchestrator.delete.base import Gateway, Span, Strategy, check
from orchestrator.errors import InfraError
from orchestrator.pfkey.client import PfkeyClient
from orchestrator.pfkey.codec import Address, Lifetime, Msg
from orchestrator.pfkey.wire import ExtType, MsgType
from orchestrator.targets.endpoints import clock

LEAD_S = 8.0  # install and reference must finish before the lifetimes end
BATCH = 32  # SPDADDs per clock reading
REALIGN_TRIES = 20


class Expire(Strategy):
    """Lifetimes chosen so that every policy dies on one tick, LEAD_S from the install.

    A policy dies once now - created > lifetime, and created is the tick its SPDADD
    lands on: the clock is read before each small batch, and a policy whose SPDADD
    landed a tick later than read (a tick ran in between) is replaced by SPDUPDATE
    with a lifetime one shorter, until every policy dies on the planned tick.
    """

    name = "expire"

    def install(self, gw: Gateway) -> None:
        if kernelclock.polled(gw):
            return kernelclock.install(gw)
        # tick_ms 0: the clock moves only when spdlab ticks it, never during install.
        lead = 2 if gw.tick_ms == 0 else max(2, int(LEAD_S * 1000 / gw.tick_ms))
        expiry = self._now(gw) + lead
        gw.plan["expiry_tick"] = expiry
        with gw.pfkey() as c:
            gw.ids = self._add(gw, c, gw.policy_msgs, expiry, MsgType.X_SPDADD)
            self._realign(gw, c, expiry)

    def _add(self, gw: Gateway, c: PfkeyClient, msgs: list[Msg], expiry: int, type_: int,
             ) -> list[int]:  # fmt: skip
        """SPDADD (or SPDUPDATE) in small batches, each with its lifetime from the clock."""
        ids: list[int] = []
        for i in range(0, len(msgs), BATCH):
            batch = _with_lifetime(msgs[i : i + BATCH], expiry - 1 - self._now(gw), type_)
            check(c.pipeline(batch), MsgType(type_).name, ids)
        return ids

    def _realign(self, gw: Gateway, c: PfkeyClient, expiry: int) -> None:
        by_sel = {_selector(m): m for m in gw.policy_msgs}
        for _ in range(REALIGN_TRIES):
            live = set(gw.ids)
            late = [m for m in c.spddump() if m.policy and m.policy.id in live
                    and _dies_at(m) != expiry]  # fmt: skip
            if not late:
                return
            gone = {m.policy.id for m in late}  # type: ignore[union-attr]
            ups = [by_sel[_selector(m)] for m in late]
            new = self._add(gw, c, ups, expiry, MsgType.X_SPDUPDATE)
            gw.ids = [i for i in gw.ids if i not in gone] + new
        raise InfraError(f"lifetimes did not end on one tick after {REALIGN_TRIES} tries")

    def delete(self, gw: Gateway) -> Span:
        if "kernel_clock" in gw.plan:
            return kernelclock.delete(gw)
        expiry = int(gw.plan["expiry_tick"])
        before = gw.stats.request("stats")
        if clock(before) >= expiry:
            raise InfraError("policies expired before they were all referenced")
        return Span(expiry - 1, expiry - 1, before, None)

    @staticmethod
    def _now(gw: Gateway) -> int:
        return clock(gw.stats.request("stats"))


def _dies_at(m: Msg) -> int:
    """The first tick on which now - created > lifetime."""
    cur, hard = m.exts[ExtType.LIFETIME_CURRENT], m.exts[ExtType.LIFETIME_HARD]
    return int(cur.addtime) + int(hard.addtime) + 1  # type: ignore[union-attr]


def _selector(m: Msg) -> tuple[object, ...]:
    """Source, destination and direction; a host's prefix as its full length."""
    src, dst = m.src, m.dst
    assert src is not None and dst is not None and m.policy is not None
    return (*_net(src), *_net(dst), m.policy.dir)


def _net(a: Address) -> tuple[str, int]:
    return str(a.ip), a.ip.max_prefixlen if a.prefixlen is None else a.prefixlen


def _with_lifetime(msgs: list[Msg], addtime: int, type_: int) -> list[Msg]:
    out = []
    for m in msgs:
        exts = dict(m.exts)
        exts[ExtType.LIFETIME_HARD] = Lifetime(addtime=addtime)
        out.append(Msg(type_, exts=exts))
    return out
