"""A target's verdict: its measured drain against the lab's expectation for its build."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from orchestrator.lab.model import Expectation

PASS = "PASS"
FAIL = "FAIL"
INFRA = "INFRA-ERROR"


@dataclass
class Check:
    name: str
    expected: str
    measured: str
    ok: bool


@dataclass
class Verdict:
    verdict: str
    reason: str
    checks: list[Check] = field(default_factory=list)


def _never(v: int | None) -> str:
    return "never" if v is None else str(v)


def checks(exp: Expectation, m: dict[str, Any]) -> list[Check]:
    """Each stated expectation against one trial's measurement.

    A drain that never completes counts as infinitely long: it meets any
    minimum and misses every maximum.
    """
    out = []
    d = m.get("drain_ticks")
    if exp.drain_ticks_max is not None:
        ok = d is not None and d <= exp.drain_ticks_max
        out.append(Check("drain_ticks", f"<= {exp.drain_ticks_max}", _never(d), ok))
    if exp.drain_ticks_min is not None:
        ok = d is None or d >= exp.drain_ticks_min
        out.append(Check("drain_ticks", f">= {exp.drain_ticks_min}", _never(d), ok))
    if exp.flush_removes is not None:
        r = m.get("removed_by_delete")
        out.append(
            Check("flush_removes", f"== {exp.flush_removes}", str(r), r == exp.flush_removes)
        )
    p = m.get("premature_frees", 0)
    if exp.premature_frees is not None:
        out.append(
            Check("premature_frees", f"== {exp.premature_frees}", str(p), p == exp.premature_frees)
        )
    if exp.premature_frees_min is not None:
        out.append(
            Check(
                "premature_frees",
                f">= {exp.premature_frees_min}",
                str(p),
                p >= exp.premature_frees_min,
            )
        )
    if exp.use_after_free is not None:
        u = m.get("use_after_free", 0)
        out.append(
            Check("use_after_free", f"== {exp.use_after_free}", str(u), u == exp.use_after_free)
        )
    return out


def judge(exp: Expectation | None, trials: list[dict[str, Any]], infra: str | None) -> Verdict:
    """PASS when every trial meets every check; FAIL names the first miss."""
    if infra:
        return Verdict(INFRA, infra)
    if exp is None:
        return Verdict(PASS, "no expectation for this build")
    all_checks = []
    for i, t in enumerate(trials, 1):
        for c in checks(exp, t):
            all_checks.append(c)
            if not c.ok:
                where = f"trial {i}: " if len(trials) > 1 else ""
                return Verdict(
                    FAIL,
                    f"{where}{c.name} expected {c.expected}, measured {c.measured}",
                    all_checks,
                )
    n = len(all_checks)
    return Verdict(PASS, f"{n} check{'' if n == 1 else 's'} met", all_checks)
