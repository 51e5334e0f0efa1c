"""Phase preflight: every precondition of the run, checked before `up` creates anything.

The run's own (runs/ writable with space, the metrics port free, the Pushgateway
answering) and each kind's, as its driver declares them. When one fails nothing is
created; `spdlab run` still leaves runs/<id>/result.json (and a state.json that says
the run is down) naming every unmet precondition, where the runs folder takes them.
"""

from __future__ import annotations

from pathlib import Path

from orchestrator.lab.resolve import ResolvedLab
from orchestrator.result.model import InfraFailure, Phase
from orchestrator.run.context import Options, RunContext
from orchestrator.runs import RunDir, runs_dir
from orchestrator.targets import preflight as pf

PUSH_FIX = "start the Pushgateway there, or drop --pushgateway"


def unmet(lab: ResolvedLab, opts: Options, base: Path | None = None) -> list[pf.Unmet]:
    """Every precondition `lab` run with `opts` does not meet; [] when it may start."""
    from orchestrator.export.exporter import METRICS_FIX
    from orchestrator.targets.registry import driver_class

    checks = [pf.writable(base or runs_dir())]
    if opts.metrics_addr:
        checks.append(pf.port_free(opts.metrics_addr, "--metrics-addr", METRICS_FIX))
    if opts.pushgateway:
        checks.append(pf.reachable(opts.pushgateway, "--pushgateway", PUSH_FIX))
    for kind in lab.kinds:
        checks += driver_class(kind).preconditions(lab)
    return [u for u in checks if u is not None]


def run(ctx: RunContext) -> None:
    """Raises PreflightError (exit 3) after recording why, when any precondition fails."""
    found = unmet(ctx.lab, ctx.opts)
    if found:
        err = pf.PreflightError(found)
        record(ctx, err)
        raise err


def record(ctx: RunContext, err: pf.PreflightError) -> None:
    """A run folder with result.json (every target INFRA-ERROR in preflight) and state.json
    (down, nothing recorded to remove); nothing at all where runs/ cannot take them."""
    from orchestrator.export import result as store
    from orchestrator.run import judge, up
    from orchestrator.targets.state import StateFile

    why = "; ".join(u.what for u in err.unmet)
    try:
        run = RunDir.create()
        lab = {"lab": ctx.lab.path, "lab_name": ctx.lab.name}
        StateFile.create(run.state_file, run_id=run.run_id, phase="down", error=f"preflight: {why}",
                         **lab)  # fmt: skip
    except OSError:
        return
    for t in ctx.targets:
        t.infra = InfraFailure(phase=Phase.PREFLIGHT.value, message=why)
    ctx.result = up.new_result(ctx, run.run_id)
    ctx.result.error = f"preflight: {why}"
    ctx.result.finished = ctx.result.started
    ctx.result.targets = [judge.target_result(ctx, t) for t in ctx.targets]
    store.write(run.path / "result.json", ctx.result)
