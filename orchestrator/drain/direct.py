"""The build matrix run directly against netkeyd processes, flows opened by hand.

No namespaces, no traffic: each policy is held by an admin-opened flow (a
local socket's cached reference), which makes every tick deterministic.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.netkeyd import Netkeyd
from orchestrator.pfkey import messages
from orchestrator.pfkey.codec import IpsecRequest
from orchestrator.pfkey.wire import Dir, Level, Mode, PolicyType

DELETE_MODES = ("flush", "delete", "delete2", "expire")
PROTECTED = ipaddress.ip_network("10.200.0.0/16")
TUNNEL = ("192.0.2.1", "192.0.2.2")


def host(i: int) -> ipaddress.IPv4Address:
    """The i-th flow's source: 10.100.0.0 + i."""
    return ipaddress.ip_address("10.100.0.0") + i


def policy_msgs(n: int, lifetime: int = 0) -> list:
    req = IpsecRequest(
        proto=50,
        mode=Mode.TUNNEL,
        level=Level.REQUIRE,
        reqid=0,
        tunnel_src=ipaddress.ip_address(TUNNEL[0]),
        tunnel_dst=ipaddress.ip_address(TUNNEL[1]),
    )
    return [
        messages.spdadd(
            f"{host(i)}/32",
            str(PROTECTED),
            dir=Dir.OUT,
            policy_type=PolicyType.IPSEC,
            requests=[req],
            lifetime=lifetime,
        )
        for i in range(n)
    ]


@dataclass
class DirectResult:
    """What one build did with N in-use policies after one mass delete."""

    build: str
    mode: str
    policies: int
    removed_by_delete: int = 0
    drain_ticks: int | None = None  # until no deleted policy is linked
    free_ticks: int | None = None  # until none is allocated either
    premature_frees: int = 0
    use_after_free: int = 0
    ticks: list[dict[str, Any]] = field(default_factory=list)
    sanitizer: str = ""
    exit_status: int | None = None

    def series(self) -> list[tuple[int, ...]]:
        """The per-tick record without absolute tick numbers, for comparisons."""
        keys = ("unlinked", "freed", "premature", "uaf", "dead_out", "alive_out", "allocated")
        return [tuple(r[k] for k in keys) for r in self.ticks]


def install(nk: Netkeyd, n: int, lifetime: int = 0) -> list[int]:
    """N OUT policies over PF_KEY, pipelined; returns their ids."""
    with nk.pfkey() as c:
        replies = c.pipeline(policy_msgs(n, lifetime), window=64)
    bad = [r for r in replies if r.errno]
    if bad:
        raise RuntimeError(f"{nk.build}: {len(bad)} SPDADD failed, errno {bad[0].errno}")
    return [r.exts[18].id for r in replies]


def open_flows(nk: Netkeyd, n: int) -> None:
    """One flow per policy: flow i is host(i) → the protected net."""
    for i in range(n):
        r = nk.admin.request(f"flow open {host(i)} 10.200.0.1 17 4500 4500")
        if r.get("out") is None:
            raise RuntimeError(f"{nk.build}: flow {i} found no policy: {r}")


def mass_delete(nk: Netkeyd, mode: str, ids: list[int], n: int) -> None:
    with nk.pfkey() as c:
        if mode == "flush":
            c.request(messages.spdflush())
        elif mode == "delete":
            c.pipeline(
                [messages.spddelete(f"{host(i)}/32", str(PROTECTED), dir=Dir.OUT) for i in range(n)]
            )
        elif mode == "delete2":
            c.pipeline([messages.spddelete2(i) for i in ids])
        elif mode != "expire":
            raise ValueError(f"unknown delete mode {mode!r}")


def run_build(
    build: str,
    workdir: Path,
    n: int = 2000,
    mode: str = "flush",
    max_ticks: int = 4000,
    release_after: int = 3,
    asan: bool = False,
) -> DirectResult:
    """Install N policies, hold each with a flow, delete them all, tick until drained.

    Flows send once, `release_after` ticks after the delete (letting go of
    dead policies lazily, as sockets do); in `expire` mode every policy's
    lifetime ends on the same tick instead of a delete.
    """
    res = DirectResult(build, mode, n)
    lifetime = 5 if mode == "expire" else 0
    # Every lifetime ends on the same tick: created at 0, dead once now - 0 > 5.
    event = lifetime + 1 if mode == "expire" else 0
    with Netkeyd(build, workdir, tick_ms=0, flow_idle_ticks=max_ticks * 2, asan=asan) as nk:
        ids = install(nk, n, lifetime)
        open_flows(nk, n)
        if event:
            nk.admin.request(f"tick {event - 1}")
        before = nk.admin.stats()["spd"]
        mass_delete(nk, mode, ids, n)
        after = nk.admin.stats()["spd"]
        res.removed_by_delete = after["unlinked"] - before["unlinked"]
        if (
            mode != "expire"
            and not any(after["alive"].values())
            and not any(after["dead"].values())
        ):
            res.drain_ticks = 0  # the delete itself left nothing linked
        release_at = release_after + (1 if event else 0)
        for t in range(1, max_ticks + 1):
            if t == release_at:
                nk.admin.request("flow sendall")
            rec = nk.admin.request("tick 1")["ticks"][0]
            res.ticks.append(rec)
            if res.drain_ticks is None and rec["dead_out"] == 0 and rec["alive_out"] == 0:
                res.drain_ticks = t
            if res.drain_ticks is not None and rec["allocated"] == 0 and t >= release_at:
                res.free_ticks = t
                break
        stats = nk.admin.stats()["spd"]
        res.premature_frees = stats["premature_frees"]
        res.use_after_free = stats["use_after_free"]
        res.sanitizer = ""
    res.sanitizer = nk.sanitizer_report()
    res.exit_status = nk.returncode
    return res
