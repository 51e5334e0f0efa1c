"""Which clock drives a lab's ticks: each netkeyd's own timer, or spdlab (deterministic).

A lab is deterministic when `scenario.deterministic` is set or a netkeyd target has
`tick_ms: 0`. Then spdlab runs every tick itself (orchestrator/run/lockstep.py), so every
target must run netkeyd, whose virtual clock moves only on the admin `tick` command, and
the traffic must be keepalives, which have a tick schedule, or none; its rounds go from
this machine, so its targets are this machine's (no `host:`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from orchestrator.kinds import runs_netkeyd
from orchestrator.lab.issues import Loc
from orchestrator.lab.model import Scenario


class Clocked(Protocol):
    """A target before resolution: where it is, what it runs, its tick."""

    loc: Loc
    name: str
    kind: str
    build: str
    tick_ms: int
    host: str | None  # a lab host's name; None: this machine


def resolve(sc: Scenario, targets: Sequence[Clocked], fail: Callable[[Loc, str], None]) -> Scenario:
    """The scenario with `deterministic` decided; a deterministic lab's tick_ms set to 0."""
    zero = [t for t in targets if t.tick_ms == 0 and runs_netkeyd(t.kind, t.build)]
    if not (sc.deterministic or zero):
        return sc
    why = "scenario.deterministic" if sc.deterministic else f"tick_ms 0 on {zero[0].name}"
    for t in targets:
        if not runs_netkeyd(t.kind, t.build):
            fail((*t.loc, "kind"), f"{t.kind} build {t.build} keeps its own time: a "
                 f"deterministic lab ({why}) runs netkeyd targets only")  # fmt: skip
        elif t.tick_ms != 0 and not sc.deterministic:
            fail((*t.loc, "tick_ms"), f"{t.tick_ms}, but {why} makes the lab deterministic: "
                 "set scenario.deterministic: true, or tick_ms 0 on every target")  # fmt: skip
        if t.host:  # lock-step rounds go from this machine's traffic host (traffic/stepped.py)
            fail((*t.loc, "host"), f"lab host {t.host}: a deterministic lab ({why}) runs "
                 "on this machine only")  # fmt: skip
        t.tick_ms = 0
    if sc.sender == "native":  # espgen is paced in wall time, not a round per tick
        fail(("scenario", "sender"), "native: a deterministic lab sends its rounds from "
             "the stepped sender")  # fmt: skip
    if sc.traffic == "rate":
        fail(("scenario", "traffic"), "rate has no tick schedule: a deterministic lab sends "
             "keepalive (or none)")  # fmt: skip
    return sc.model_copy(update={"deterministic": True})
