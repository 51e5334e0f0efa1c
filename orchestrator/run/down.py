"""Phase down: the artifacts (junit.xml, drain.png, each target's logs), then teardown."""

from __future__ import annotations

from orchestrator import teardown
from orchestrator.errors import InfraError
from orchestrator.export import junit, plot
from orchestrator.result.describe import title
from orchestrator.run.context import RunContext


def run(ctx: RunContext) -> None:
    try:
        artifacts(ctx)
    finally:
        if ctx.opts.before_down is not None:
            ctx.opts.before_down()
        if not ctx.opts.keep and ctx.lr is not None:
            ctx.driver_progress.prefix = ""
            for problem in teardown.down(ctx.lr):
                ctx.progress.log(f"down: {problem}")


def artifacts(ctx: RunContext) -> None:
    res = ctx.result
    if res is None:
        return
    if not res.targets:
        from orchestrator.run.judge import target_result

        res.targets = [target_result(ctx, t) for t in ctx.targets]
    ctx.save()
    junit.write(ctx.run_dir / "junit.xml", res)
    if any(t.trials for t in res.targets):
        plot.plot(res.targets, ctx.run_dir / "drain.png",
                  f"{ctx.lab.name}: {title(res.scenario)}", ctx.opts.linear)  # fmt: skip
    collect(ctx)


def collect(ctx: RunContext) -> None:
    for t in ctx.targets:
        try:
            ctx.lr.driver(t.name).collect(t.name, ctx.run_dir / "targets" / t.name)
        except (InfraError, OSError) as e:
            ctx.progress.log(f"{t.name}: collect: {e}")
