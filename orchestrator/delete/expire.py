"""Expire — no message: every policy's hard lifetime ends on the same tick."""

from __future__ import annotations

from orchestrator.delete.base import Gateway, Span, Strategy, check
from orchestrator.errors import InfraError
from orchestrator.pfkey.codec import Lifetime, Msg
from orchestrator.pfkey.wire import ExtType

LEAD_S = 8.0  # install and reference must finish before the lifetimes end
BATCH = 32  # SPDADDs per clock reading


class Expire(Strategy):
    """Lifetimes chosen so that every policy dies on one tick, LEAD_S from the install.

    A policy dies once now - created > lifetime; created is the tick its SPDADD
    lands on, so the clock is read again before each small batch.
    """

    name = "expire"

    def install(self, gw: Gateway) -> None:
        now = self._now(gw)
        expiry = now + max(2, int(LEAD_S * 1000 / max(gw.tick_ms, 1)))
        gw.plan["expiry_tick"] = expiry
        msgs = gw.policy_msgs
        with gw.pfkey() as c:
            for i in range(0, len(msgs), BATCH):
                batch = _with_lifetime(msgs[i : i + BATCH], expiry - 1 - self._now(gw))
                check(c.pipeline(batch), "SPDADD", gw.ids)

    def delete(self, gw: Gateway) -> Span:
        expiry = int(gw.plan["expiry_tick"])
        before = gw.stats.request("stats")
        if int(before["now"]) >= expiry:
            raise InfraError("policies expired before they were all referenced")
        return Span(expiry - 1, expiry - 1, before, None)

    @staticmethod
    def _now(gw: Gateway) -> int:
        return int(gw.stats.request("stats")["now"])


def _with_lifetime(msgs: list[Msg], addtime: int) -> list[Msg]:
    out = []
    for m in msgs:
        exts = dict(m.exts)
        exts[ExtType.LIFETIME_HARD] = Lifetime(addtime=addtime)
        out.append(Msg(m.type, exts=exts))
    return out
