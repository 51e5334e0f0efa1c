"""Patched against unpatched: which builds pair up, and what a patch changed."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from orchestrator import buildsconf
from orchestrator.drain import stats
from orchestrator.result.measure import NotObservable
from orchestrator.result.model import (
    Baseline,
    Comparison,
    Measures,
    MeasureTest,
    TargetResult,
    Trial,
)

NO_EFFECT = "no effect"
FIXED = "fixed"
REGRESSED = "regressed"
CHANGED = "changed"
UNDECIDED = "undecided"
UNDIRECTED = ("free_ticks",)
# Measures that follow when the traffic's packets and lookups fall: alone they decide nothing.
SECONDARY = ("free_ticks", "walked_per_lookup")
SAME = ("premature_frees", "use_after_free")
LABELS = {
    "drain_ticks": "drain ticks",
    "free_ticks": "free ticks",
    "premature_frees": "premature frees",
    "use_after_free": "use after free",
    "walked_per_lookup": "walked per lookup",
}


def pairs(builds: Iterable[str], recipes: Mapping[str, buildsconf.Recipe] | None = None,
          ) -> list[tuple[str, str]]:  # fmt: skip
    """(base, patched) where patched is base plus patches on the same tree.

    The closest base wins: canary+nextsp pairs with canary, not netkey.

    Args:
        recipes: builds beyond the builds.conf files and kernels/builds.conf (a lab file's
            own, as a run recorded them); they win over a build of the same name.
    """
    recipes = {**buildsconf.every(), **(recipes or {})}
    present = [b for b in builds if b in recipes]
    out = []
    for p in present:
        bases = [b for b in present if b != p and _extends(recipes[p], recipes[b])]
        if bases:
            out.append((max(bases, key=lambda b: len(recipes[b].patches)), p))
    return out


def _extends(p: buildsconf.Recipe, b: buildsconf.Recipe) -> bool:
    n = len(b.patches)
    same = (p.tree, p.config) == (b.tree, b.config)
    return same and n < len(p.patches) and p.patches[:n] == b.patches


@dataclass
class Side:
    """What classify needs of one build on one hardware label: every trial, and its summary."""

    build: str
    trials: list[Trial]
    measures: Measures
    passed: bool | None = None  # the lab's expectation met; None: none to meet
    synthetic: bool = False
    hardware: str = ""
    deterministic: bool = False
    drain_seconds: float | None = None
    tolerance: dict[str, float] | None = None  # "no effect" within; default stats.TOLERANCE

    @classmethod
    def of(cls, targets: list[TargetResult]) -> Side:
        """The targets of one build and label, their trials pooled."""
        t = targets[0]
        verdicts = {x.verdict for x in targets}
        passed = verdicts == {"PASS"} if verdicts <= {"PASS", "FAIL"} else None
        trials = [tr for x in targets for tr in x.trials]
        return cls(t.build, trials, t.measures, passed, t.synthetic, hardware_of(t),
                   all(x.deterministic for x in targets), t.drain_seconds)  # fmt: skip

    @property
    def key(self) -> str:
        return f"{self.build}@{self.hardware}" if self.hardware else self.build

    @property
    def series(self) -> list[list[list[int]]]:
        return [tr.series for tr in self.trials]


def hardware_of(t: TargetResult) -> str:
    return t.labels.get("hardware", "")


def measured(targets: Iterable[TargetResult], tolerance: dict[str, float] | None = None,
             ) -> dict[tuple[str, str], Side]:  # fmt: skip
    """(build, hardware label) → the measured targets of that build on that label."""
    groups: dict[tuple[str, str], list[TargetResult]] = {}
    for t in targets:
        if t.trials and t.verdict != "INFRA-ERROR":
            groups.setdefault((t.build, hardware_of(t)), []).append(t)
    sides = {k: Side.of(ts) for k, ts in groups.items()}
    for side in sides.values():
        side.tolerance = tolerance
    return sides


def measured_by_build(targets: Iterable[TargetResult]) -> dict[str, Side]:
    """The sides of each build on its first hardware label (`compare --builds`)."""
    out: dict[str, Side] = {}
    for (build, _), side in sorted(measured(targets).items()):
        out.setdefault(build, side)
    return out


def _worse(a: object, b: object) -> bool:
    """Is b worse than a (None = never drained)?  Unobserved values compare as equal."""
    if a is None or isinstance(a, NotObservable) or isinstance(b, NotObservable):
        return False
    return b is None or b > a  # type: ignore[operator]


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return "never" if v is None else "—" if isinstance(v, NotObservable) else str(v)


def _changes(base: dict[str, object], patched: dict[str, object], keys: Iterable[str],
             ) -> tuple[list[str], list[str]]:  # fmt: skip
    fixed, worse = [], []
    for key in keys:
        a, b = base.get(key), patched.get(key)
        label = LABELS.get(key, key)
        if _worse(a, b):
            worse.append(f"{label} {_fmt(a)} → {_fmt(b)}")
        elif _worse(b, a):
            fixed.append(f"{label} {_fmt(a)} → {_fmt(b)}")
    return fixed, worse


def medians(side: Side) -> dict[str, object]:
    """The side's compared measures as medians over its trials (never: None)."""
    out: dict[str, object] = {}
    for key in stats.MEASURES:
        vs = stats.values([tr.measures for tr in side.trials], key)
        if vs is not None and vs:
            med = statistics.median(vs)
            out[key] = None if med == math.inf else _num(key, med)
        elif side.trials:  # not measured in some trial: no evidence either way
            out[key] = NotObservable(not_observable="not measured in every trial")
    return out


def _num(key: str, v: float) -> float | int:
    return v if v != int(v) else int(v)


def classify(base: Side, patched: Side, mode: str | None = None, across: str = "patch",
             ) -> Comparison:  # fmt: skip
    """What the patch changed (or the hardware, or the baseline), with its statistics."""
    tests = stats.compare([t.measures for t in base.trials], [t.measures for t in patched.trials],
                          base.tolerance)  # fmt: skip
    exact = base.deterministic and patched.deterministic
    d = _exact(base, patched) if exact else _tested(base, patched, tests)
    c = Comparison(base=base.build, patched=patched.build, verdict=d.verdict, detail=d.detail,
                   control=patched.synthetic and not base.synthetic, mode=mode, across=across,
                   observed=d.observed, method=stats.DETERMINISTIC if exact else stats.METHOD,
                   k=(len(base.trials), len(patched.trials)), tests=tests)  # fmt: skip
    if across == "hardware":
        c.base_hardware, c.patched_hardware = base.hardware, patched.hardware
        c.timing = {base.hardware: base.drain_seconds, patched.hardware: patched.drain_seconds}
    else:
        c.hardware = patched.hardware or None
    return c


@dataclass
class Decision:
    verdict: str
    detail: str
    observed: str | None = None  # undecided: what the medians alone suggest


def _exact(base: Side, patched: Side) -> Decision:
    """Deterministic builds: any difference in any trial is a change, none is no effect."""

    def same(a: Trial, b: Trial) -> bool:
        keys = ("removed_by_delete", *SAME)
        return a.series == b.series and all(getattr(a.measures, k) == getattr(b.measures, k)
                                            for k in keys)  # fmt: skip

    if len(base.trials) == len(patched.trials) and all(map(same, base.trials, patched.trials)):
        return Decision(NO_EFFECT, f"identical per-tick drain to {base.build}")
    return Decision(*_direction(base, patched, stats.MEASURES))


def _tested(base: Side, patched: Side, tests: list[MeasureTest]) -> Decision:
    """A significant measure decides; else enough trials and narrow intervals are no effect."""
    differs = [t.measure for t in tests if t.significant]
    seen, shown = _direction(base, patched, differs or stats.MEASURES)
    observed = None if medians(base) == medians(patched) else seen
    if any(m not in SECONDARY for m in differs):
        return Decision(seen, shown)
    if differs:
        names = " and ".join(LABELS[m] for m in differs)
        why = f"only {names} differ significantly, and they follow the traffic ({shown})"
        return Decision(UNDECIDED, why, seen)
    k, need = min(len(base.trials), len(patched.trials)), stats.min_trials()
    if k < need:
        why = f"{k} trial{'s' if k != 1 else ''}; the rank test needs {need} per side"
        return Decision(UNDECIDED, why + (f"; the medians suggest {seen} ({shown})"
                                          if observed else ""), observed)  # fmt: skip
    wide = [t for t in tests if not t.within_tolerance]
    if not wide:
        return Decision(NO_EFFECT, f"no significant difference from {base.build}, within tolerance")
    w = wide[0]
    label = LABELS.get(w.measure, w.measure)
    why = f"no significant difference, but {label}: interval {_ci(w)} exceeds ±{w.tolerance:g}"
    return Decision(UNDECIDED, why, observed)


def _ci(t: MeasureTest) -> str:
    return "—" if t.interval is None else f"[{t.interval[0]:g}, {t.interval[1]:g}]"


def _direction(base: Side, patched: Side, keys: Iterable[str]) -> tuple[str, str]:
    """fixed, regressed or changed from the medians of the measures that differ.

    Free ticks follow the traffic (and come early when frees are premature): they never
    make a patch fixed or regressed, and a change in them alone is "changed".
    """
    keys = list(keys)
    mb, mp = medians(base), medians(patched)
    fixed, worse = _changes(mb, mp, [k for k in keys if k not in UNDIRECTED])
    earlier, later = _changes(mb, mp, [k for k in keys if k in UNDIRECTED])
    moved = earlier + later
    if not fixed and not worse and moved and base.passed == patched.passed:
        return CHANGED, "; ".join(moved)
    met_b, met_p = base.passed, patched.passed
    if (met_b is False and met_p is True) or (fixed and not worse and met_p is not False):
        return FIXED, "; ".join(fixed) or "meets the expectation"
    if (worse and not fixed) or (met_b is True and met_p is False):
        return REGRESSED, "; ".join(worse) or "misses the expectation"
    return CHANGED, "; ".join(fixed + worse + moved) or "per-tick series differ"


Recipes = Mapping[str, buildsconf.Recipe] | None


def compare_all(sides: dict[tuple[str, str], Side], mode: str | None = None,
                recipes: Recipes = None) -> list[Comparison]:  # fmt: skip
    """Every patched build against its base on the same hardware label."""
    out = []
    for hw in sorted({h for _, h in sides}):
        on = {b: s for (b, h), s in sides.items() if h == hw}
        out += [classify(on[b], on[p], mode) for b, p in pairs(on, recipes)]
    return out


def comparisons(targets: Iterable[TargetResult], mode: str | None = None,
                recipes: Recipes = None, tolerance: dict[str, float] | None = None,
                ) -> list[Comparison]:  # fmt: skip
    """Patched against base on each hardware label, then each build across labels."""
    sides = measured(targets, tolerance)
    return compare_all(sides, mode, recipes) + across_hardware(sides, mode)


def across_hardware(sides: dict[tuple[str, str], Side], mode: str | None = None,
                    ) -> list[Comparison]:  # fmt: skip
    """Each build on its first hardware label against each other label: one row a pair."""
    out = []
    for build in sorted({b for b, _ in sides}):
        hws = sorted(h for b, h in sides if b == build)
        out += [classify(sides[build, hws[0]], sides[build, h], mode, "hardware") for h in hws[1:]]
    return out


def against_baseline(sides: dict[tuple[str, str], Side], baseline: dict[tuple[str, str], Side],
                     run_id: str) -> Baseline:  # fmt: skip
    """Every (build, hardware) of this run against the same in the baseline run."""
    out = Baseline(run_id=run_id)
    for key in sorted(sides):
        side = sides[key]
        if key not in baseline:
            out.missing.append(side.key)
            continue
        c = classify(baseline[key], side, across="baseline")
        out.comparisons.append(c)
        if c.verdict == UNDECIDED:
            out.undecided.append(side.key)
        elif c.verdict != NO_EFFECT:
            out.changed.append(side.key)
    return out
