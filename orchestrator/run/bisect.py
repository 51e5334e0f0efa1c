"""`spdlab bisect`: each prefix of a build's patch series, run side by side, compared in order.

The prefixes are builds of the lab file's own kind (`firmware:` for netkeyd, `kernels:`
for kernels) on one target definition of the lab, the build's first; the engine runs
them all in one run with K trials each, and the first prefix whose drain differs from
the one before names the patch.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator import buildsconf
from orchestrator.drain import compare
from orchestrator.errors import ConfigError
from orchestrator.lab.model import LabDef, TargetDef
from orchestrator.lab.resolve import ResolvedLab, resolve
from orchestrator.result.model import Comparison, Model, RunResult

DECIDED = (compare.FIXED, compare.REGRESSED, compare.CHANGED)


class Step(Model):
    """One prefix: its build, the patch it adds, and how it compares with the one before."""

    build: str
    patch: str | None = None  # None: the bare base of the series
    file: str | None = None
    sha256: str | None = None
    comparison: Comparison | None = None


class BisectResult(Model):
    build: str
    run_id: str
    trials: int
    steps: list[Step] = []
    first: int | None = None  # index into steps of the first patch that changes the drain
    undecided: list[str] = []  # prefixes whose comparison could not be decided


@dataclass
class Series:
    """A build's series as prefix builds: the bare base, then one patch file more each."""

    section: str  # "firmware" or "kernels": where the lab file defines such builds
    base: str  # the build with no patch of the series
    files: list[Path]
    extra: dict[str, Any]  # fields for each prefix's definition (tree; a kernel's base)


def _firmware(lab: ResolvedLab, build: str) -> Series | None:
    recipes = {**buildsconf.read(), **buildsconf.lab_recipes(lab.firmware)}
    r = recipes.get(build)
    if r is None:
        return None
    own = lab.firmware.get(build)
    words = own.patches if own else r.patches
    bare = [b.name for b in buildsconf.read().values() if b.tree == r.tree and not b.patches]
    if not bare:
        raise ConfigError(f"bisect: no build of tree {r.tree} without patches")
    files = [buildsconf.patch_file(w).resolve() for w in words]
    return Series("firmware", bare[0], files, {"tree": r.tree})


def _kernel(lab: ResolvedLab, build: str) -> Series | None:
    from orchestrator.kernel import conf
    from orchestrator.targets.qemuboot import kernel_build

    if build not in conf.known_names() and build not in lab.kernels:
        return None
    kb = kernel_build(lab, build)
    # The base: the build of the same source with the shortest series that B's begins
    # with (every build's starts with the instrumentation, xfrm-census).
    paths = [p.path.resolve() for p in kb.patches]

    def extends(b: Any) -> bool:
        head = [p.path.resolve() for p in b.patches]
        return b.source == kb.source and len(head) < len(paths) and head == paths[: len(head)]

    bases = sorted((len(b.patches), b.name) for b in conf.load().values() if extends(b))
    if not bases:
        raise ConfigError(f"bisect: no kernel build of {kb.source} that {build}'s series extends")
    n, base = bases[0]
    return Series("kernels", base, paths[n:], {"base": base})


def series(lab: ResolvedLab, build: str) -> Series:
    """B's patch series, netkeyd or kernel.

    Raises:
        ConfigError: B is neither, or has no patch to bisect.
    """
    s = _firmware(lab, build) or _kernel(lab, build)
    if s is None:
        raise ConfigError(f"bisect: --build: unknown build '{build}'")
    if not s.files:
        raise ConfigError(f"bisect: --build: {build} has no patches to bisect")
    return s


def prefix_names(build: str, s: Series) -> list[str]:
    """The bare base, B.1 … B.(n-1), then B itself."""
    n = len(s.files)
    return [s.base, *(f"{build}.{i}" for i in range(1, n)), build]


def _target(d: LabDef, build: str) -> TargetDef:
    """The lab's first target definition that runs build."""
    for t in d.targets:
        group = d.groups[t.group].build if t.group in d.groups else None
        runs = t.builds if t.builds is not None else [t.build or group or d.defaults.build]
        if build in runs:
            return t
    raise ConfigError(f"bisect: --build: no target of the lab runs {build}")


def bisect_lab(d: LabDef, lab: ResolvedLab, build: str) -> tuple[ResolvedLab, Series, list[str]]:
    """The lab rewritten: one target per prefix, from B's target definition, no expectations."""
    s = series(lab, build)
    names = prefix_names(build, s)
    own = {n: {**s.extra, "patches": [str(f) for f in s.files[:i]]}
           for i, n in enumerate(names) if 0 < i < len(names) - 1}  # fmt: skip
    t = _target(d, build).model_copy(update={"name": "bs", "build": None, "builds": names,
                                             "count": 1, "address": None})  # fmt: skip
    doc = d.model_dump(exclude={"targets", "expect"}, exclude_none=True, mode="json")
    doc["targets"] = [t.model_dump(exclude_none=True, mode="json")]
    doc[s.section] = {**doc.get(s.section, {}), **own}
    return resolve(LabDef.model_validate(doc), path=lab.path), s, names


def steps(res: RunResult, s: Series, names: list[str]) -> BisectResult:
    """Each prefix against the one before; the first decided difference names the patch."""
    from orchestrator.drain import stats

    sides = compare.measured(res.targets, stats.tolerances(res.scenario))
    by_build = {b: side for (b, _), side in sides.items()}
    out = BisectResult(build=names[-1], run_id=res.run_id, trials=res.scenario.trials)
    out.steps.append(Step(build=names[0]))
    for i, name in enumerate(names[1:], 1):
        f = s.files[i - 1]
        step = Step(build=name, patch=f.name.removesuffix(".patch"), file=str(f),
                    sha256=hashlib.sha256(f.read_bytes()).hexdigest())  # fmt: skip
        prev, cur = by_build.get(names[i - 1]), by_build.get(name)
        if prev is not None and cur is not None:
            step.comparison = compare.classify(prev, cur, across="patch")
            if step.comparison.verdict in DECIDED and out.first is None:
                out.first = i
            elif step.comparison.verdict == compare.UNDECIDED:
                out.undecided.append(name)
        else:
            out.undecided.append(name)
        out.steps.append(step)
    return out
