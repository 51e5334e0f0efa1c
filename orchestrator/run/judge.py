"""Phase judged: each target's verdict against the lab's expectation, and the comparisons."""

from __future__ import annotations

import statistics

from orchestrator import buildsconf
from orchestrator import kinds as registry
from orchestrator.drain import compare, stats
from orchestrator.drain import verdict as V
from orchestrator.result.model import Baseline, Measures, RunResult, TargetResult
from orchestrator.run.context import RunContext, Target


def run(ctx: RunContext) -> None:
    summarise(ctx)


def summarise(ctx: RunContext) -> None:
    """Verdicts and comparisons from the trials so far, into result.json."""
    assert ctx.result is not None
    recipes = all_recipes(ctx)
    ctx.result.targets = [target_result(ctx, t, recipes) for t in ctx.targets]
    tol = stats.tolerances(ctx.lab.scenario)
    mode = ctx.lab.scenario.delete if len(ctx.lab.modes) > 1 else None  # one of several runs
    ctx.result.comparisons = compare.comparisons(ctx.result.targets, mode, recipes, tol)
    if ctx.opts.baseline is not None:
        ctx.result.baseline = baseline(ctx.result, ctx.opts.baseline)
    ctx.save()


def all_recipes(ctx: RunContext) -> dict[str, buildsconf.Recipe]:
    """Every build comparisons may pair: the builds.conf files', kernels included, and the
    lab file's own netkeyd and kernel builds."""
    return {**buildsconf.every(ctx.lab.kernels), **buildsconf.lab_recipes(ctx.lab.firmware)}


def baseline(res: RunResult, base: RunResult) -> Baseline:
    """Every (build, hardware) against the same in the baseline run."""
    tol = stats.tolerances(res.scenario)
    return compare.against_baseline(compare.measured(res.targets, tol),
                                    compare.measured(base.targets, tol), base.run_id)  # fmt: skip


def target_result(ctx: RunContext, t: Target,
                  recipes: dict[str, buildsconf.Recipe] | None = None) -> TargetResult:  # fmt: skip
    s = t.spec
    r = (all_recipes(ctx) if recipes is None else recipes).get(s.build)
    out = TargetResult(
        name=s.name, build=s.build, kind=s.kind, labels=dict(s.labels), tick_ms=s.tick_ms,
        address=str(s.address), synthetic=bool(r and r.synthetic),
        tick_meaning=registry.tick_meaning(s.kind, s.build), infra=t.infra, trials=t.trials,
        deterministic=ctx.clock.deterministic,
    )  # fmt: skip
    _verdict(ctx, t, out)
    if t.trials:
        _summary(out)
    return out


def _verdict(ctx: RunContext, t: Target, out: TargetResult) -> None:
    if not t.trials and t.infra is None:
        return  # PENDING
    infra = f"{t.infra.phase}: {t.infra.message}" if t.infra else None
    exp = ctx.lab.expect.get(t.spec.build)
    exp = exp.for_mode(ctx.lab.scenario.delete) if exp is not None else None
    v = V.judge(exp, [tr.measures for tr in t.trials], infra)
    out.verdict, out.reason, out.checks = v.verdict, v.reason, v.checks  # type: ignore[assignment]


def _summary(out: TargetResult) -> None:
    """drain_ticks: the median over trials (when every trial drained); the rest: the last."""
    drains = [tr.measures.drain_ticks for tr in out.trials]
    finite = [d for d in drains if isinstance(d, int)]
    median = int(statistics.median(finite)) if finite and len(finite) == len(drains) else None
    last = out.trials[-1]
    out.measures = Measures(**{**last.measures.model_dump(), "drain_ticks": median})
    out.drain_spread = (min(finite), max(finite)) if finite else None
    # A deterministic tick has no wall length (tick_ms 0): no seconds at this tick.
    timed = median is not None and out.tick_ms > 0
    out.drain_seconds = median * out.tick_ms / 1000 if timed else None
    out.completed_at = last.completed_at
