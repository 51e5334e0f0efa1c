"""Phase judged: each target's verdict against the lab's expectation, and the comparisons."""

from __future__ import annotations

import statistics

from orchestrator import buildsconf
from orchestrator import kinds as registry
from orchestrator.drain import compare
from orchestrator.drain import verdict as V
from orchestrator.result.model import Measures, TargetResult
from orchestrator.run.context import RunContext, Target


def run(ctx: RunContext) -> None:
    summarise(ctx)


def summarise(ctx: RunContext) -> None:
    """Verdicts and comparisons from the trials so far, into result.json."""
    assert ctx.result is not None
    ctx.result.targets = [target_result(ctx, t) for t in ctx.targets]
    sides = compare.measured_by_build(ctx.result.targets)
    ctx.result.comparisons = compare.compare_all(sides)
    ctx.save()


def target_result(ctx: RunContext, t: Target) -> TargetResult:
    s = t.spec
    out = TargetResult(
        name=s.name, build=s.build, kind=s.kind, labels=dict(s.labels), tick_ms=s.tick_ms,
        deterministic=ctx.clock.deterministic, address=str(s.address),
        synthetic=buildsconf.is_synthetic(s.build),
        tick_meaning=registry.tick_meaning(s.kind, s.build), infra=t.infra, trials=t.trials,
    )  # fmt: skip
    _verdict(ctx, t, out)
    if t.trials:
        _summary(out)
    return out


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
    # A deterministic tick has no wall length (tick_ms 0): no seconds at this tick.
    timed = median is not None and out.tick_ms > 0
    out.drain_seconds = median * out.tick_ms / 1000 if timed else None
    out.completed_at = last.completed_at
