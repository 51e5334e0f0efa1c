"""The build matrix without a lab file: a lab made in memory, run by the same engine.

One netns gateway per build, keepalive traffic holding every policy, one run per
delete mode; each run is a normal runs/<id>/ with its result.json.
"""

from __future__ import annotations

from collections.abc import Sequence

from orchestrator.lab.model import LabDef
from orchestrator.lab.resolve import ResolvedLab, resolve
from orchestrator.progress import NullProgress, Progress
from orchestrator.result.model import RunResult
from orchestrator.run import engine
from orchestrator.run.context import Options, RunContext

TICK_MS = 15
RANGE = "10.79.0.0/16"


def lab(builds: Sequence[str], policies: int, mode: str, *, tick_ms: int = TICK_MS,
        range_: str = RANGE) -> ResolvedLab:  # fmt: skip
    """The matrix for one delete mode as a resolved lab."""
    d = LabDef.model_validate({
        "name": f"matrix-{mode}",
        "range": range_,
        "defaults": {"kind": "netns", "tick_ms": tick_ms, "flow_idle_ticks": 100},
        "targets": [{"name": "mx", "builds": list(builds)}],
        "scenario": {"policies": policies, "traffic": "keepalive", "keepalive_ticks": 25,
                     "delete": mode, "timeout_ticks": max(3 * policies, 300)},
    })  # fmt: skip
    return resolve(d, path="(spdlab matrix)")


def run(builds: Sequence[str], policies: int, modes: Sequence[str],
        progress: Progress | None = None, **kw: object) -> list[RunResult]:  # fmt: skip
    """One engine run per mode; returns each run's result."""
    out = []
    for mode in modes:
        ctx = RunContext(lab(builds, policies, mode, **kw), Options(), progress or NullProgress())
        out.append(engine.execute(ctx))
    return out
