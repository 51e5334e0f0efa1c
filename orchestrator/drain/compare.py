"""Patched against unpatched: which builds pair up, and what a patch changed."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from orchestrator import buildsconf
from orchestrator.result.measure import NotObservable
from orchestrator.result.model import Comparison, Measures, TargetResult

NO_EFFECT = "no effect"
FIXED = "fixed"
REGRESSED = "regressed"
CHANGED = "changed"
SAME = ("removed_by_delete", "premature_frees", "use_after_free")
LABELS = (("drain_ticks", "drain ticks"), ("premature_frees", "premature frees"))


def pairs(builds: Iterable[str], recipes: Mapping[str, buildsconf.Recipe] | None = None,
          ) -> list[tuple[str, str]]:  # fmt: skip
    """(base, patched) where patched is base plus patches on the same tree.

    The closest base wins: canary+nextsp pairs with canary, not netkey.

    Args:
        recipes: every build (buildsconf.every); default: those of the two builds.conf.
    """
    recipes = buildsconf.every() if recipes is None else recipes
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
    """What classify needs of one build: its first trial's series and its summary."""

    build: str
    series: list[list[int]]
    measures: Measures
    passed: bool | None = None  # the lab's expectation met; None: none to meet
    synthetic: bool = False

    @classmethod
    def of(cls, t: TargetResult) -> Side:
        passed = t.verdict == "PASS" if t.verdict in ("PASS", "FAIL") else None
        return cls(t.build, t.trials[0].series, t.measures, passed, t.synthetic)


def measured_by_build(targets: Iterable[TargetResult]) -> dict[str, Side]:
    """The first measured target of each build."""
    out: dict[str, Side] = {}
    for t in targets:
        if t.trials and t.verdict != "INFRA-ERROR":
            out.setdefault(t.build, Side.of(t))
    return out


def _worse(a: object, b: object) -> bool:
    """Is b worse than a (None = never drained)?  Unobserved values compare as equal."""
    if a is None or isinstance(a, NotObservable) or isinstance(b, NotObservable):
        return False
    return b is None or b > a  # type: ignore[operator]


def _fmt(v: object) -> str:
    return "never" if v is None else "—" if isinstance(v, NotObservable) else str(v)


def _changes(base: Measures, patched: Measures) -> tuple[list[str], list[str]]:
    fixed, worse = [], []
    for key, label in LABELS:
        a, b = getattr(base, key), getattr(patched, key)
        if _worse(a, b):
            worse.append(f"{label} {_fmt(a)} → {_fmt(b)}")
        elif _worse(b, a):
            fixed.append(f"{label} {_fmt(a)} → {_fmt(b)}")
    return fixed, worse


def classify(base: Side, patched: Side, mode: str | None = None) -> Comparison:
    """What the patch changed: no effect, fixed, regressed or changed."""
    verdict, detail = _verdict(base, patched)
    control = patched.synthetic and not base.synthetic
    return Comparison(base=base.build, patched=patched.build, verdict=verdict,
                      detail=detail, control=control, mode=mode)  # fmt: skip


def _verdict(base: Side, patched: Side) -> tuple[str, str]:
    same = all(getattr(base.measures, k) == getattr(patched.measures, k) for k in SAME)
    if same and base.series == patched.series:
        return NO_EFFECT, f"identical per-tick drain to {base.build}"
    fixed, worse = _changes(base.measures, patched.measures)
    met_b, met_p = base.passed, patched.passed
    if (met_b is False and met_p is True) or (fixed and not worse and met_p is not False):
        return FIXED, "; ".join(fixed) or "meets the expectation"
    if (worse and not fixed) or (met_b is True and met_p is False):
        return REGRESSED, "; ".join(worse) or "misses the expectation"
    return CHANGED, "; ".join(fixed + worse) or "per-tick series differ"


def compare_all(
    sides: dict[str, Side], mode: str | None = None,
    recipes: Mapping[str, buildsconf.Recipe] | None = None,
) -> list[Comparison]:  # fmt: skip
    return [classify(sides[b], sides[p], mode) for b, p in pairs(sides, recipes)]
