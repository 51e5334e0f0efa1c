"""A target's verdict: its measured drain against the lab's expectation for its build.

A check on a measure the target could not observe is UNRESOLVED, never met.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from orchestrator.lab.model import Expectation
from orchestrator.result.measure import NotObservable
from orchestrator.result.model import Check, Measures

PASS = "PASS"
FAIL = "FAIL"
UNRESOLVED = "UNRESOLVED"
INFRA = "INFRA-ERROR"

Test = Callable[[int | None, int], bool]
# A drain that never completes counts as infinitely long: it meets any minimum
# and misses every maximum.
TESTS: dict[str, tuple[str, Test]] = {
    "drain_ticks_max": ("<=", lambda m, e: m is not None and m <= e),
    "drain_ticks_min": (">=", lambda m, e: m is None or m >= e),
    "flush_removes": ("==", lambda m, e: m == e),
    "premature_frees": ("==", lambda m, e: m == e),
    "premature_frees_min": (">=", lambda m, e: m is not None and m >= e),
    "use_after_free": ("==", lambda m, e: m == e),
}


@dataclass
class Verdict:
    verdict: str
    reason: str
    checks: list[Check] = field(default_factory=list)


def _shown(v: object) -> str:
    if isinstance(v, NotObservable):
        return f"not observable ({v.not_observable})"
    return "never" if v is None else str(v)


def check(key: str, measure: str, expected: int, m: Measures) -> Check:
    op, test = TESTS[key]
    got = getattr(m, measure)
    if isinstance(got, NotObservable):
        status = "unresolved"
    else:
        status = "met" if test(got, expected) else "missed"
    return Check(name=measure, expected=f"{op} {expected}", measured=_shown(got), status=status)


def checks(exp: Expectation, m: Measures) -> list[Check]:
    """Each stated expectation against one trial's measures."""
    return [check(k, measure, getattr(exp, k), m) for k, measure in exp.measured().items()]


def judge(exp: Expectation | None, trials: list[Measures], infra: str | None) -> Verdict:
    """PASS when every trial meets every check; FAIL names the first miss.

    UNRESOLVED when nothing missed but a check could not be measured.
    """
    if infra:
        return Verdict(INFRA, infra)
    if exp is None:
        return Verdict(PASS, "no expectation for this build")
    done: list[Check] = []
    for i, m in enumerate(trials, 1):
        where = f"trial {i}: " if len(trials) > 1 else ""
        for c in checks(exp, m):
            done.append(c)
            if c.status == "missed":
                why = f"{where}{c.name} expected {c.expected}, measured {c.measured}"
                return Verdict(FAIL, why, done)
    return _passed(done)


def _passed(done: list[Check]) -> Verdict:
    open_ = [c for c in done if c.status == "unresolved"]
    if open_:
        return Verdict(UNRESOLVED, f"{open_[0].name} expected {open_[0].expected}: "
                       f"{open_[0].measured}", done)  # fmt: skip
    n = len(done)
    return Verdict(PASS, f"{n} check{'' if n == 1 else 's'} met", done)
