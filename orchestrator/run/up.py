"""Phase up: bring the lab up and start result.json."""

from __future__ import annotations

import time

from orchestrator.progress import Prefixed
from orchestrator.result import versions
from orchestrator.result.model import InfraFailure, LabRef, RunResult
from orchestrator.run.context import RunContext


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def booted_kernels(ctx: RunContext) -> list[dict]:
    """The versions each target's kernel build recorded while it came up (state.json)."""
    if ctx.lr is None:  # a failed preflight: nothing came up
        return []
    recs = ctx.lr.state.targets.values()
    return [r["kernel"] for r in recs if isinstance(r.get("kernel"), dict)]


def run(ctx: RunContext) -> None:
    from orchestrator.targets.session import LabRun

    # The drivers report up's steps ("up: network") and, later, down's under the same object.
    ctx.driver_progress = Prefixed(ctx.progress, "up: ")
    ctx.lr = LabRun.up(ctx.lab, progress=ctx.driver_progress)
    ctx.result = new_result(ctx, ctx.lr.run_id)
    for t in ctx.targets:
        if t.name in ctx.lr.failed:
            t.infra = InfraFailure(phase="up", message=ctx.lr.failed[t.name])
            ctx.progress.log(f"{t.name}: INFRA-ERROR in up: {t.infra.message}")
    ctx.save()
    if ctx.opts.on_up:
        ctx.opts.on_up(ctx.lr)


def new_result(ctx: RunContext, run_id: str) -> RunResult:
    """result.json as the run starts: what runs, with which versions."""
    return RunResult(
        run_id=run_id,
        started=now(),
        tick_ms=ctx.tick_ms,
        lab=LabRef(name=ctx.lab.name, file=ctx.lab.path),
        scenario=ctx.lab.scenario.model_copy(update={"trials": ctx.trials}),
        versions=versions.collect(
            [t.spec.build for t in ctx.targets], ctx.lab.firmware, booted_kernels(ctx)
        ),
    )
