"""The statistics of a comparison, per measure over the trials of both sides (scipy).

A two-sided Mann-Whitney U test whose p-value comes from the exact permutation
distribution (ties included), and a bootstrap percentile interval of the difference
of medians (patched − base). A drain that never completed ranks above every finite
one; an interval is then only given when both sides never completed.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from orchestrator.result.measure import NotObservable
from orchestrator.result.model import Measures, MeasureTest

ALPHA = 0.05
CONFIDENCE = 0.95
RESAMPLES = 2000
PERMUTATIONS = 9999  # at or above C(2K, K) the permutation distribution is exact (K <= 7)
SEED = 20041118  # a fixed seed: the same trials give the same interval
# "No effect": every interval of the difference of medians lies within ± this.
TOLERANCE: dict[str, float] = {
    "drain_ticks": 1,
    "free_ticks": 2,
    "premature_frees": 0,
    "use_after_free": 0,
    "walked_per_lookup": 0.5,
}


def tolerances(scenario: Any | None) -> dict[str, float]:
    """The tolerances for a scenario. With traffic, frees wait for each flow's next packet,
    so free ticks move by up to one keepalive period; and the few lookups made during a
    short drain walk what they meet, so walked per lookup moves by up to a quarter of the
    policies (a canary walks half of them)."""
    if scenario is None or scenario.traffic == "none":
        return dict(TOLERANCE)
    return {
        **TOLERANCE,
        "free_ticks": TOLERANCE["free_ticks"] + scenario.keepalive_ticks,
        "walked_per_lookup": max(TOLERANCE["walked_per_lookup"], scenario.policies / 4),
    }


MEASURES = tuple(TOLERANCE)
METHOD = (
    f"two-sided Mann-Whitney U (exact permutation p), α={ALPHA}; bootstrap "
    f"{CONFIDENCE:.0%} percentile interval of the difference of medians, {RESAMPLES} resamples"
)
DETERMINISTIC = "deterministic: every trial's series and measures compared exactly"


def min_trials(alpha: float = ALPHA) -> int:
    """The fewest trials per side at which the rank test can reach alpha at all."""
    k = 1
    while 2 / math.comb(2 * k, k) > alpha:
        k += 1
    return k


# Measures where None means "never happened within the timeout"; for the others (walked
# per lookup) None means there was nothing to measure.
NEVER_IS_INF = ("drain_ticks", "free_ticks")


def _value(measure: str, v: object) -> float | None:
    """A trial's measure as a number: inf for never, None when not measured."""
    if isinstance(v, NotObservable) or (v is None and measure not in NEVER_IS_INF):
        return None
    return math.inf if v is None else float(v)  # type: ignore[arg-type]


def values(trials: Sequence[Measures], measure: str) -> list[float] | None:
    """The measure over trials; None when a trial could not measure it."""
    vs = [_value(measure, getattr(m, measure)) for m in trials]
    return None if any(v is None for v in vs) else vs  # type: ignore[return-value]


def _median(vs: list[float]) -> float:
    import numpy as np

    return float(np.median(vs))


def _p_value(a: list[float], b: list[float]) -> float | None:
    import numpy as np
    from scipy import stats

    if len(a) < 2 or len(b) < 2:
        return None  # one trial on a side: nothing to rank against
    if len(set(a) | set(b)) == 1:
        return 1.0  # every value equal: no ordering to test
    method = stats.PermutationMethod(n_resamples=PERMUTATIONS, rng=np.random.default_rng(SEED))
    return float(stats.mannwhitneyu(b, a, alternative="two-sided", method=method).pvalue)


def _interval(a: list[float], b: list[float]) -> tuple[float, float] | None:
    import numpy as np
    from scipy import stats

    if math.inf in a or math.inf in b:
        return (0.0, 0.0) if set(a) == set(b) == {math.inf} else None
    if len(a) < 2 or len(b) < 2:
        return None

    def diff(x: np.ndarray, y: np.ndarray, axis: int) -> np.ndarray:
        return np.median(y, axis=axis) - np.median(x, axis=axis)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # identical resamples: a degenerate, exact interval
        res = stats.bootstrap((a, b), diff, n_resamples=RESAMPLES, confidence_level=CONFIDENCE,
                              method="percentile", rng=np.random.default_rng(SEED))  # fmt: skip
    lo, hi = res.confidence_interval
    return float(lo), float(hi)


def _never(v: float) -> float | None:
    """inf (never completed) as None, the way result.json says never."""
    return None if v == math.inf else v


def _json(vs: list[float]) -> list[float | None]:
    return [_never(v) for v in vs]


def test(measure: str, a: list[float], b: list[float], tol: float, alpha: float = ALPHA,
         ) -> MeasureTest:  # fmt: skip
    """One measure's rank test and interval; a the base's trials, b the patched's."""
    p = _p_value(a, b)
    ci = _interval(a, b)
    within = ci is not None and -tol <= ci[0] and ci[1] <= tol
    return MeasureTest(
        measure=measure, base=_json(a), patched=_json(b),
        median_base=_never(_median(a)), median_patched=_never(_median(b)),
        p_value=p, interval=ci, tolerance=tol, significant=p is not None and p < alpha,
        within_tolerance=within,
    )  # fmt: skip


def compare(base: Sequence[Measures], patched: Sequence[Measures],
            tolerance: Mapping[str, float] | None = None) -> list[MeasureTest]:  # fmt: skip
    """Every measure both sides observed in every trial."""
    tol = {**TOLERANCE, **(tolerance or {})}
    out = []
    for measure in MEASURES:
        a, b = values(base, measure), values(patched, measure)
        if a is not None and b is not None:
            out.append(test(measure, a, b, tol[measure]))
    return out
