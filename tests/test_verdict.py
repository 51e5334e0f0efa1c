"""judge and classify on hand-made measures: every verdict and every classification."""

from __future__ import annotations

from orchestrator.drain.compare import Side, classify
from orchestrator.drain.verdict import judge
from orchestrator.lab.model import Expectation
from orchestrator.result.measure import NotObservable
from orchestrator.result.model import Measures

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


def side(build: str, drain: int | None, premature: object = 0, passed: bool | None = None,
         series: list[list[int]] | None = None, synthetic: bool = False) -> Side:  # fmt: skip
    ms = m(drain_ticks=drain, premature_frees=premature)
    return Side(build, series or [[0, 0, 0, 0, 0]], ms, passed, synthetic)


def test_identical_series_and_measures_are_no_effect() -> None:
    c = classify(side("netkey", 0), side("netkey+nextsp", 0))
    assert (c.verdict, c.detail) == ("no effect", "identical per-tick drain to netkey")


def test_a_shorter_drain_is_fixed() -> None:
    c = classify(side("canary", 1997, series=[[1]]), side("canary+nextsp", 1, series=[[2]]))
    assert (c.verdict, c.detail) == ("fixed", "drain ticks 1997 → 1")


def test_a_longer_drain_is_regressed_and_a_synthetic_patch_is_the_control() -> None:
    c = classify(side("netkey", 0), side("canary", 1997, series=[[9]], synthetic=True))
    assert (c.verdict, c.detail, c.control) == ("regressed", "drain ticks 0 → 1997", True)
    never = classify(side("netkey", 0), side("canary", None, series=[[9]]))
    assert (never.verdict, never.detail) == ("regressed", "drain ticks 0 → never")


def test_a_missed_expectation_is_regressed_even_at_equal_measures() -> None:
    c = classify(side("a", 2, passed=True), side("b", 2, passed=False, series=[[1]]))
    assert (c.verdict, c.detail) == ("regressed", "misses the expectation")


def test_better_on_one_measure_and_worse_on_another_is_changed() -> None:
    c = classify(side("netipsec", 2, premature=2000), side("x", 5, premature=0, series=[[1]]))
    assert c.verdict == "changed"
    assert c.detail == "premature frees 2000 → 0; drain ticks 2 → 5"


def test_an_unobserved_measure_is_no_evidence_either_way() -> None:
    c = classify(side("a", 0, premature=NO), side("b", 0, premature=5, series=[[1]]))
    assert (c.verdict, c.detail) == ("changed", "per-tick series differ")
