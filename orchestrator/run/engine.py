"""The run engine: one lab's experiment as a table of phases, walked in order.

preflight → up → (installed → referenced → deleted → drained) per trial → judged → down.
Each phase is a module with one entry point, `run(ctx)`. Preflight creates nothing: a
precondition that fails ends the run before up. A target that breaks becomes INFRA-ERROR
(with its phase) and the others carry on; down always runs, on Ctrl-C too, and
result.json says how far the run got.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

from orchestrator.errors import SpdlabError
from orchestrator.result.model import Phase, RunResult
from orchestrator.run import delete, down, drain, install, judge, preflight, reference, traffic, up
from orchestrator.run.context import RunContext

Step = Callable[[RunContext], None]
TRIAL: tuple[tuple[Phase, Step], ...] = (
    (Phase.INSTALLED, install.run),
    (Phase.REFERENCED, reference.run),
    (Phase.DELETED, delete.run),
    (Phase.DRAINED, drain.run),
)


def walk(ctx: RunContext, phase: Phase, fn: Step) -> None:
    """Enter a phase, run it, leave it; result.json shows each completed phase."""
    ctx.phases.enter(phase)
    hold(f"{phase.value}:start")
    fn(ctx)
    hold(phase.value)
    ctx.phases.leave(phase)
    ctx.save()


def hold(point: str) -> None:
    """A breakpoint: SPDLAB_STOP_AT=PHASE stops spdlab (SIGSTOP) once PHASE's work is done,
    before it is recorded; PHASE:start, as PHASE begins.

    Inspect the targets there, then `kill -CONT` to go on, or `kill -9` to check that
    `spdlab down` cleans up after a crash at that point.
    """
    if os.environ.get("SPDLAB_STOP_AT") == point:
        os.kill(os.getpid(), signal.SIGSTOP)


def execute(ctx: RunContext) -> RunResult:
    """Run every phase; always ends in down (unless kept) with result.json written."""
    walk(ctx, Phase.PREFLIGHT, preflight.run)  # nothing to take down when it fails
    try:
        walk(ctx, Phase.UP, up.run)
        for n in range(1, ctx.trials + 1):
            ctx.trial = n
            trial(ctx)
        walk(ctx, Phase.JUDGED, judge.run)
        assert ctx.result is not None
        ctx.result.complete = True
    except KeyboardInterrupt:
        failed(ctx, "interrupted", interrupted=True)
        raise
    except SpdlabError as e:
        failed(ctx, str(e))
        raise
    finally:
        finish(ctx)
    return ctx.result


def trial(ctx: RunContext) -> None:
    try:
        for phase, fn in TRIAL:
            walk(ctx, phase, fn)
    finally:
        traffic.stop(ctx)


def failed(ctx: RunContext, reason: str, interrupted: bool = False) -> None:
    ctx.phases.fail(reason)
    if ctx.result is not None:
        ctx.result.interrupted = interrupted
        ctx.result.error = ctx.phases.failure


def finish(ctx: RunContext) -> None:
    if ctx.result is None:
        return
    ctx.phases.current = None
    ctx.phases.enter(Phase.DOWN)
    ctx.result.finished = up.now()
    down.run(ctx)
    if ctx.opts.keep:
        return  # the lab is still up: result.json keeps its last completed phase
    ctx.phases.leave(Phase.DOWN)
    ctx.save()
