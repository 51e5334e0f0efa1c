"""A bare netkeyd stepped tick by tick (tick_ms 0) after one mass delete: firmware semantics.

Not a run engine: no lab, no traffic. Each policy is held by an admin-opened flow and
the test drives every tick itself, so tests can assert exact per-tick records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.delete.bare import install, mass_delete, open_flows
from orchestrator.netkeyd import Netkeyd


@dataclass
class Stepped:
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


def _linked(spd: dict[str, Any]) -> int:
    return sum(spd["alive"].values()) + sum(spd["dead"].values())


def _delete(nk: Netkeyd, res: Stepped, mode: str, ids: list[int], n: int) -> None:
    before = nk.admin.stats()["spd"]
    mass_delete(nk, mode, ids, n)
    after = nk.admin.stats()["spd"]
    res.removed_by_delete = after["unlinked"] - before["unlinked"]
    if mode != "expire" and _linked(after) == 0:
        res.drain_ticks = 0  # the delete itself left nothing linked


def _step(nk: Netkeyd, res: Stepped, max_ticks: int, release_at: int) -> None:
    for t in range(1, max_ticks + 1):
        if t == release_at:
            nk.admin.request("flow sendall")
        rec = nk.admin.request("tick 1")["ticks"][0]
        res.ticks.append(rec)
        if res.drain_ticks is None and rec["dead_out"] == 0 and rec["alive_out"] == 0:
            res.drain_ticks = t
        if res.drain_ticks is not None and rec["allocated"] == 0 and t >= release_at:
            res.free_ticks = t
            return


def run_build(
    build: str,
    workdir: Path,
    n: int = 2000,
    mode: str = "flush",
    max_ticks: int = 4000,
    release_after: int = 3,
    asan: bool = False,
) -> Stepped:
    """Install N policies, hold each with a flow, delete them all, tick until drained.

    Flows send once, `release_after` ticks after the delete (letting go of dead
    policies lazily, as sockets do); in `expire` mode every policy's lifetime
    ends on the same tick instead: created at 0, dead once now - 0 > 5.
    """
    res = Stepped(build, mode, n)
    lifetime = 5 if mode == "expire" else 0
    with Netkeyd(build, workdir, tick_ms=0, flow_idle_ticks=max_ticks * 2, asan=asan) as nk:
        ids = install(nk, n, lifetime)
        open_flows(nk, n)
        if lifetime:
            nk.admin.request(f"tick {lifetime}")
        _delete(nk, res, mode, ids, n)
        _step(nk, res, max_ticks, release_after + (1 if lifetime else 0))
        stats = nk.admin.stats()["spd"]
        res.premature_frees = stats["premature_frees"]
        res.use_after_free = stats["use_after_free"]
    res.sanitizer = nk.sanitizer_report()
    res.exit_status = nk.returncode
    return res
