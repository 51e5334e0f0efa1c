"""Patched against unpatched: which builds pair up, and what a patch changed."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.lab.builds import firmware_dir

NO_EFFECT = "no effect"
FIXED = "fixed"
REGRESSED = "regressed"
CHANGED = "changed"


def build_series() -> dict[str, tuple[str, tuple[str, ...]]]:
    """build → (tree, patches), from firmware/builds.conf."""
    out: dict[str, tuple[str, tuple[str, ...]]] = {}
    for raw in (firmware_dir() / "builds.conf").read_text().splitlines():
        words = raw.split("#", 1)[0].split()
        if len(words) >= 2:
            out[words[0]] = (words[1], tuple(words[2:]))
    return out


def pairs(builds: Iterable[str]) -> list[tuple[str, str]]:
    """(base, patched) where patched is base plus patches on the same tree.

    The closest base wins: canary+nextsp pairs with canary, not netkey.
    """
    from orchestrator.kernel.conf import series as kernel_series

    series = {**build_series(), **{k: v[:2] for k, v in kernel_series().items()}}
    present = [b for b in builds if b in series]
    out = []
    for p in present:
        tree, patches = series[p]
        best = None
        for b in present:
            btree, bpatches = series[b]
            if b == p or btree != tree or len(bpatches) >= len(patches):
                continue
            if patches[: len(bpatches)] == bpatches and (
                best is None or len(series[best][1]) < len(bpatches)
            ):
                best = b
        if best is not None:
            out.append((best, p))
    return out


@dataclass
class Classification:
    base: str
    patched: str
    verdict: str
    detail: str


def _worse(a: int | None, b: int | None) -> bool:
    """Is b worse than a (None = never drained)?"""
    if a is None:
        return False
    return b is None or b > a


def classify(base: Mapping[str, Any], patched: Mapping[str, Any]) -> Classification:
    """Compare two measured summaries.

    Each has: build, series (per-tick tuples), drain_ticks, premature_frees,
    use_after_free, and optionally passed (the lab's expectation met).
    """
    b, p = base["build"], patched["build"]
    same = ("series", "removed_by_delete", "premature_frees", "use_after_free")
    if all(base.get(k) == patched.get(k) for k in same):
        return Classification(b, p, NO_EFFECT, f"identical per-tick drain to {b}")
    fixed, worse = [], []
    for key, label in (("drain_ticks", "drain ticks"), ("premature_frees", "premature frees")):
        if _worse(base[key], patched[key]):
            worse.append(f"{label} {_fmt(base[key])} → {_fmt(patched[key])}")
        elif _worse(patched[key], base[key]):
            fixed.append(f"{label} {_fmt(base[key])} → {_fmt(patched[key])}")
    met_b, met_p = base.get("passed"), patched.get("passed")
    if (met_b is False and met_p is True) or (fixed and not worse and met_p is not False):
        return Classification(b, p, FIXED, "; ".join(fixed) or "meets the expectation")
    if (worse and not fixed) or (met_b is True and met_p is False):
        return Classification(b, p, REGRESSED, "; ".join(worse) or "misses the expectation")
    return Classification(b, p, CHANGED, "; ".join(fixed + worse) or "per-tick series differ")


def _fmt(v: int | None) -> str:
    return "never" if v is None else str(v)
