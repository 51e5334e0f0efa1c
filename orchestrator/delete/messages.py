"""The four strategies that delete by PF_KEY messages."""

from __future__ import annotations

from orchestrator.delete.base import Gateway, Strategy
from orchestrator.pfkey import messages
from orchestrator.pfkey.codec import Msg
from orchestrator.pfkey.wire import MsgType


class Flush(Strategy):
    """One SPDFLUSH."""

    name = "flush"

    def messages(self, gw: Gateway) -> list[Msg]:
        return [messages.spdflush()]


class Delete(Strategy):
    """SPDDELETE of every policy, by selector."""

    name = "delete"

    def messages(self, gw: Gateway) -> list[Msg]:
        return list(gw.delete_msgs)


class Delete2(Strategy):
    """SPDDELETE2 of every policy, by the id SPDADD answered with."""

    name = "delete2"

    def messages(self, gw: Gateway) -> list[Msg]:
        return [messages.spddelete2(i) for i in gw.ids]


class Update(Strategy):
    """An SPDUPDATE storm: every in-use policy replaced; the old one is marked DEAD.

    The replacements stay linked, so the drain ends when only they are left.
    """

    name = "spdupdate"

    def survivors(self, gw: Gateway) -> int:
        return len(gw.policy_msgs)

    def messages(self, gw: Gateway) -> list[Msg]:
        return [Msg(MsgType.X_SPDUPDATE, exts=dict(m.exts)) for m in gw.policy_msgs]
