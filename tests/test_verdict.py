"""judge and classify on hand-made measures: every verdict and every classification."""

from __future__ import annotations

import pytest

from orchestrator.drain import compare, stats
from orchestrator.drain.compare import Side, classify
from orchestrator.drain.verdict import judge
from orchestrator.lab.model import Expectation
from orchestrator.result.describe import stats_line
from orchestrator.result.measure import NotObservable
from orchestrator.result.model import Measures, TargetResult, Trial

NO = NotObservable(not_observable="SPDDUMP polling cannot see frees")


def m(**kw: object) -> Measures:
    return Measures(**kw)


def test_pass_names_how_many_checks_were_met() -> None:
    v = judge(Expectation(drain_ticks_max=1, premature_frees=0), [m(drain_ticks=0)], None)
    assert (v.verdict, v.reason) == ("PASS", "2 checks met")
    assert [c.status for c in v.checks] == ["met", "met"]


def test_fail_names_the_trial_the_expectation_and_the_measure() -> None:
    trials = [m(drain_ticks=0), m(drain_ticks=7)]
    v = judge(Expectation(drain_ticks_max=1), trials, None)
    assert (v.verdict, v.reason) == ("FAIL", "trial 2: drain_ticks expected <= 1, measured 7")


def test_a_drain_that_never_ends_meets_a_minimum_and_misses_a_maximum() -> None:
    assert judge(Expectation(drain_ticks_min=1900), [m(drain_ticks=None)], None).verdict == "PASS"
    v = judge(Expectation(drain_ticks_max=5), [m(drain_ticks=None)], None)
    assert v.reason == "drain_ticks expected <= 5, measured never"


def test_a_check_on_an_unobserved_measure_is_unresolved_never_pass() -> None:
    v = judge(Expectation(drain_ticks_max=0, premature_frees=0),
              [m(drain_ticks=0, premature_frees=NO)], None)  # fmt: skip
    assert v.verdict == "UNRESOLVED"
    assert [c.status for c in v.checks] == ["met", "unresolved"]
    assert "not observable (SPDDUMP polling cannot see frees)" in v.reason


def test_a_miss_outweighs_an_unresolved_check() -> None:
    v = judge(Expectation(drain_ticks_max=0, premature_frees=0),
              [m(drain_ticks=3, premature_frees=NO)], None)  # fmt: skip
    assert v.verdict == "FAIL"


def test_infra_error_and_no_expectation() -> None:
    assert judge(Expectation(), [], "drained: netkeyd died").verdict == "INFRA-ERROR"
    assert judge(None, [m()], None).reason == "no expectation for this build"


def side(build: str, drains: list[int | None], premature: object = 0,
         passed: bool | None = None, series: list[list[int]] | None = None,
         synthetic: bool = False, deterministic: bool = False, hardware: str = "",
         ) -> Side:  # fmt: skip
    """One build's side: a trial per drain value."""
    trials = [Trial(trial=n, issue_tick=0, delete_tick=0, series=series or [[0, 0, 0, 0, 0]],
                    measures=m(drain_ticks=d, premature_frees=premature))
              for n, d in enumerate(drains, 1)]  # fmt: skip
    return Side(build, trials, trials[-1].measures, passed, synthetic, hardware, deterministic)


def test_deterministic_identical_series_are_no_effect_at_one_trial() -> None:
    c = classify(side("netkey", [0], deterministic=True),
                 side("netkey+nextsp", [0], deterministic=True))  # fmt: skip
    assert (c.verdict, c.detail) == ("no effect", "identical per-tick drain to netkey")
    assert c.method == stats.DETERMINISTIC and c.k == (1, 1)
    assert stats_line(c) == "K=1/1; compared exactly, no rank test"


def test_deterministic_builds_that_differ_once_are_decided_at_one_trial() -> None:
    canary = side("canary", [1997], series=[[9]], synthetic=True, deterministic=True)
    c = classify(side("netkey", [0], deterministic=True), canary)
    assert (c.verdict, c.detail, c.control) == ("regressed", "drain ticks 0 → 1997", True)
    c = classify(side("a", [2], passed=True, deterministic=True),
                 side("b", [2], passed=False, series=[[1]], deterministic=True))  # fmt: skip
    assert (c.verdict, c.detail) == ("regressed", "misses the expectation")


def test_one_trial_is_undecided_and_says_what_the_medians_suggest() -> None:
    c = classify(side("netkey", [0]), side("canary", [1997]))
    assert (c.verdict, c.observed) == ("undecided", "regressed")
    assert c.detail == ("1 trial; the rank test needs 4 per side; the medians suggest "
                        "regressed (drain ticks 0 → 1997)")  # fmt: skip
    same = classify(side("netkey", [0]), side("netkey+nextsp", [0]))
    assert (same.verdict, same.observed) == ("undecided", None)


def test_three_separated_trials_are_still_too_few_for_the_rank_test() -> None:
    c = classify(side("netkey", [0, 1, 0]), side("canary", [1997, 1998, 1996]))
    assert c.verdict == "undecided"
    assert c.tests[0].p_value == pytest.approx(0.1)


def test_five_separated_trials_are_significant_with_an_interval() -> None:
    c = classify(side("netkey", [0, 1, 0, 0, 1]), side("canary", [1997, 1998, 1997, 1999, 1997]))
    assert (c.verdict, c.detail) == ("regressed", "drain ticks 0 → 1997")
    drain = c.tests[0]
    assert drain.measure == "drain_ticks" and drain.significant
    assert drain.p_value == pytest.approx(2 / 252)
    assert drain.interval is not None and 1995 <= drain.interval[0] <= drain.interval[1] <= 1999
    assert c.k == (5, 5) and "Mann-Whitney" in c.method
    never = classify(side("netkey", [0, 0, 0, 0]), side("canary", [None] * 4))
    assert (never.verdict, never.detail) == ("regressed", "drain ticks 0 → never")
    assert never.tests[0].interval is None and never.tests[0].median_patched is None


def test_no_effect_needs_no_significant_difference_and_intervals_within_tolerance() -> None:
    c = classify(side("netkey", [0, 1, 0, 0, 1]), side("netkey+nextsp", [1, 0, 0, 1, 0]))
    assert c.verdict == "no effect"
    assert all(t.within_tolerance for t in c.tests)
    wide = classify(side("a", [0, 9, 0, 9, 0, 9]), side("b", [9, 0, 9, 0, 9, 0]))
    assert wide.verdict == "undecided"
    assert "drain ticks: interval" in wide.detail and "exceeds ±1" in wide.detail


def test_better_on_one_measure_and_worse_on_another_is_changed() -> None:
    c = classify(side("netipsec", [2, 2, 2, 3, 2], premature=2000),
                 side("x", [5, 6, 5, 5, 5], premature=0))  # fmt: skip
    assert c.verdict == "changed"
    assert c.detail == "premature frees 2000 → 0; drain ticks 2 → 5"


def test_free_ticks_alone_decide_nothing() -> None:
    def frees(build: str, ticks: list[int]) -> Side:
        s = side(build, [0] * len(ticks))
        for tr, f in zip(s.trials, ticks, strict=True):
            tr.measures = m(drain_ticks=0, free_ticks=f)
        return s

    c = classify(frees("netipsec", [1, 1, 2, 1, 1]), frees("netipsec+split", [90, 94, 91, 93, 95]))
    assert (c.verdict, c.observed) == ("undecided", "changed")
    assert c.detail == ("only free ticks differ significantly, and they follow the traffic "
                        "(free ticks 1 → 93)")  # fmt: skip


def test_walked_per_lookup_without_lookups_is_no_evidence() -> None:
    a, b = side("a", [0, 0, 0, 0]), side("b", [0, 0, 0, 0])
    for tr in a.trials:
        tr.measures = m(drain_ticks=0, walked_per_lookup=None)
    assert "walked_per_lookup" not in {t.measure for t in classify(a, b).tests}
    assert classify(a, b).verdict == "no effect"


def test_an_unobserved_measure_is_not_tested() -> None:
    c = classify(side("a", [0, 0, 0, 0], premature=NO), side("b", [0, 0, 0, 0], premature=5))
    assert "premature_frees" not in {t.measure for t in c.tests}
    assert c.verdict == "no effect"


def result(name: str, build: str, hardware: str, drains: list[int], tick_ms: int = 15,
           ) -> TargetResult:  # fmt: skip
    s = side(build, drains)
    med = drains[0]
    secs = None if med is None else med * tick_ms / 1000
    return TargetResult(name=name, build=build, kind="netns", labels={"hardware": hardware},
                        tick_ms=tick_ms, verdict="PASS", trials=s.trials,
                        measures=m(drain_ticks=med), drain_seconds=secs)  # fmt: skip


def test_one_build_on_two_hardware_labels_is_one_comparison_row() -> None:
    targets = [result("a", "linux", "x86_64", [0, 0, 0, 0]),
               result("b", "linux", "arm64", [0, 0, 0, 0], tick_ms=1000),
               result("c", "linux-canary", "x86_64", [None] * 4)]  # fmt: skip
    rows = [c for c in compare.comparisons(targets) if c.across == "hardware"]
    assert len(rows) == 1
    (c,) = rows
    assert (c.base, c.patched, c.base_hardware, c.patched_hardware) == (
        "linux",
        "linux",
        "arm64",
        "x86_64",
    )
    assert c.verdict == "no effect" and c.timing == {"arm64": 0.0, "x86_64": 0.0}


def test_a_baseline_flags_the_changed_build_and_nothing_else() -> None:
    base = [result("a", "netkey", "x", [0, 1, 0, 0, 1]), result("b", "mine", "x", [0, 0, 1, 0, 0])]
    now = [result("a", "netkey", "x", [1, 0, 0, 1, 0]),
           result("b", "mine", "x", [50, 51, 50, 50, 52]),
           result("c", "new", "x", [0, 0, 0, 0, 0])]  # fmt: skip
    b = compare.against_baseline(compare.measured(now), compare.measured(base), "r1")
    assert (b.changed, b.undecided, b.missing) == (["mine@x"], [], ["new@x"])
