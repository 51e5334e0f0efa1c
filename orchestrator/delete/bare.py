"""Policies on a bare netkeyd (no lab): installed over PF_KEY, each held by an admin flow.

For fixtures and benchmarks that drive one netkeyd process by hand; the mass
delete goes through the same strategies as `spdlab run`.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from orchestrator.delete.base import Gateway
from orchestrator.delete.registry import strategy
from orchestrator.pfkey import messages
from orchestrator.pfkey.codec import IpsecRequest, Msg
from orchestrator.pfkey.wire import Dir, Level, Mode, PolicyType

PROTECTED = ipaddress.ip_network("10.200.0.0/16")
TUNNEL = ("192.0.2.1", "192.0.2.2")


def host(i: int) -> ipaddress.IPv4Address:
    """The i-th flow's source: 10.100.0.0 + i."""
    return ipaddress.ip_address("10.100.0.0") + i


def policy_msgs(n: int, lifetime: int = 0) -> list[Msg]:
    req = IpsecRequest(proto=50, mode=Mode.TUNNEL, level=Level.REQUIRE, reqid=0,
                       tunnel_src=ipaddress.ip_address(TUNNEL[0]),
                       tunnel_dst=ipaddress.ip_address(TUNNEL[1]))  # fmt: skip
    return [messages.spdadd(f"{host(i)}/32", str(PROTECTED), dir=Dir.OUT,
                            policy_type=PolicyType.IPSEC, requests=[req], lifetime=lifetime)
            for i in range(n)]  # fmt: skip


def delete_msgs(n: int) -> list[Msg]:
    return [messages.spddelete(f"{host(i)}/32", str(PROTECTED), dir=Dir.OUT) for i in range(n)]


def install(nk: Any, n: int, lifetime: int = 0) -> list[int]:
    """N OUT policies over PF_KEY, pipelined; returns their ids."""
    with nk.pfkey() as c:
        replies = c.pipeline(policy_msgs(n, lifetime), window=64)
    bad = [r for r in replies if r.errno]
    if bad:
        raise RuntimeError(f"{nk.build}: {len(bad)} SPDADD failed, errno {bad[0].errno}")
    return [r.exts[18].id for r in replies]


def open_flows(nk: Any, n: int) -> None:
    """One flow per policy: flow i is host(i) → the protected net."""
    for i in range(n):
        r = nk.admin.request(f"flow open {host(i)} 10.200.0.1 17 4500 4500")
        if r.get("out") is None:
            raise RuntimeError(f"{nk.build}: flow {i} found no policy: {r}")


def mass_delete(nk: Any, mode: str, ids: list[int], n: int) -> None:
    """The mode's delete of the N policies; expire sends nothing (lifetimes end alone)."""
    if mode == "expire":
        return
    gw = Gateway(nk.pfkey, nk.admin, 0, policy_msgs(n), delete_msgs(n), list(ids))
    strategy(mode).delete(gw)
