"""Phase judged: each target's verdict against the lab's expectation, and the comparisons."""

from __future__ import annotations

import statistics

from orchestrator import buildsconf
from orchestrator import kinds as registry
from orchestrator.drain import compare, stats
from orchestrator.drain import verdict as V
from orchestrator.result import versions
from orchestrator.result.model import Baseline, Measures, RunResult, TargetResult
from orchestrator.run.context import RunContext, Target


def run(ctx: RunContext) -> None:
    summarise(ctx)


def summarise(ctx: RunContext) -> None:
    """Verdicts and comparisons from the trials so far, into result.json."""
    assert ctx.result is not None
    ctx.result.targets = [target_result(ctx, t) for t in ctx.targets]
    recipes = {**versions.recipes(ctx.result.versions), **kernel_recipes(ctx)}
    tol = stats.tolerances(ctx.lab.scenario)
    ctx.result.comparisons = compare.comparisons(ctx.result.targets, recipes=recipes, tolerance=tol)
    if ctx.opts.baseline is not None:
        ctx.result.baseline = baseline(ctx.result, ctx.opts.baseline)
    ctx.save()


def kernel_recipes(ctx: RunContext) -> dict[str, buildsconf.Recipe]:
    """Kernel builds, kernels/builds.conf's and the lab file's own, as comparisons pair them."""
    from orchestrator.kernel.conf import series
    from orchestrator.targets.qemuboot import kernel_build

    out = {k: buildsconf.Recipe(k, tree, patches, synthetic)
           for k, (tree, patches, synthetic) in series().items()}  # fmt: skip
    for name in ctx.lab.kernels:
        kb = kernel_build(ctx.lab, name)
        out[name] = buildsconf.Recipe(name, f"{kb.source}:{kb.config}",
                                      tuple(p.name for p in kb.patches), kb.synthetic)  # fmt: skip
    return out


def baseline(res: RunResult, base: RunResult) -> Baseline:
    """Every (build, hardware) against the same in the baseline run."""
    tol = stats.tolerances(res.scenario)
    return compare.against_baseline(compare.measured(res.targets, tol),
                                    compare.measured(base.targets, tol), base.run_id)  # fmt: skip


def target_result(ctx: RunContext, t: Target) -> TargetResult:
    s = t.spec
    own = {**buildsconf.lab_recipes(ctx.lab.firmware), **kernel_recipes(ctx)}
    out = TargetResult(
        name=s.name, build=s.build, kind=s.kind, labels=dict(s.labels), tick_ms=s.tick_ms,
        address=str(s.address), synthetic=buildsconf.is_synthetic(s.build, own),
        tick_meaning=registry.tick_meaning(s.kind), infra=t.infra, trials=t.trials,
        deterministic=deterministic(ctx, t),
    )  # fmt: skip
    _verdict(ctx, t, out)
    if t.trials:
        _summary(out)
    return out


def deterministic(ctx: RunContext, t: Target) -> bool:
    """Whether the target's series repeat exactly run to run: declared by its spec or the
    scenario (`deterministic`), for targets whose clock is driven tick by tick."""
    return bool(getattr(t.spec, "deterministic", False)
                or getattr(ctx.lab.scenario, "deterministic", False))  # fmt: skip


def _verdict(ctx: RunContext, t: Target, out: TargetResult) -> None:
    if not t.trials and t.infra is None:
        return  # PENDING
    infra = f"{t.infra.phase}: {t.infra.message}" if t.infra else None
    v = V.judge(ctx.lab.expect.get(t.spec.build), [tr.measures for tr in t.trials], infra)
    out.verdict, out.reason, out.checks = v.verdict, v.reason, v.checks  # type: ignore[assignment]


def _summary(out: TargetResult) -> None:
    """drain_ticks: the median over trials (when every trial drained); the rest: the last."""
    drains = [tr.measures.drain_ticks for tr in out.trials]
    finite = [d for d in drains if isinstance(d, int)]
    median = int(statistics.median(finite)) if finite and len(finite) == len(drains) else None
    last = out.trials[-1]
    out.measures = Measures(**{**last.measures.model_dump(), "drain_ticks": median})
    out.drain_spread = (min(finite), max(finite)) if finite else None
    out.drain_seconds = median * out.tick_ms / 1000 if median is not None else None
    out.completed_at = last.completed_at
