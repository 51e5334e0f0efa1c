"""result.json as pydantic models: run, target, trial, tick record, check, comparison.

The JSON schema (orchestrator/export/result.schema.json) is generated from RunResult.
Every measure is a value or NotObservable; docs/MEASURES.md defines each one.
"""

from __future__ import annotations

import enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.lab.model import Scenario
from orchestrator.result.measure import Count, Ratio, Ticks
from orchestrator.result.versions import Versions

SCHEMA = "spdlab.result/2"


class Phase(str, enum.Enum):
    """The run's one phase vocabulary: the engine, result.json and the exporter use it."""

    NEW = "new"
    PREFLIGHT = "preflight"
    UP = "up"
    INSTALLED = "installed"
    REFERENCED = "referenced"
    DELETED = "deleted"
    DRAINED = "drained"
    JUDGED = "judged"
    DOWN = "down"
    FAILED = "failed"


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TickRecord(Model):
    """One timer tick from the target's tick ring; deltas since the previous tick, then levels."""

    tick: int
    unlinked: int
    timer_unlinked: int | None = None  # of `unlinked`, the timer's; None: not reported
    freed: int
    premature: int
    uaf: int
    lookups: int
    walked: int
    esp_ok: int
    esp_drop: int
    alive_in: int
    alive_out: int
    dead_in: int
    dead_out: int
    allocated: int
    flows: int
    resolution: str | None = None  # "spddump-poll": a real kernel, observed by SPDDUMP
    time: float | None = None
    # A qemu guest's own counters (orchestrator.targets.kstat); None: not read.
    counters: str | None = None  # "kernel": allocated/freed/esp_* come from the kernel
    deleted_allocated: int | None = None  # unlinked but not yet freed
    bundles: int | None = None  # xfrm_dst_cache active objects
    xfrm_stat: dict[str, int] | None = None  # /proc/net/xfrm_stat totals

    @property
    def linked(self) -> int:
        return self.alive_in + self.alive_out + self.dead_in + self.dead_out


class Measures(Model):
    """One trial's measures, or a target's summary of its trials (docs/MEASURES.md)."""

    removed_by_delete: Count = 0
    timer_unlinked_during_delete: Count = 0
    delete_span_ticks: int = 0
    drain_ticks: Ticks = None
    drain_ticks_from_issue: Ticks = None
    free_ticks: Ticks = None
    premature_frees: Count = 0
    use_after_free: Count = 0
    walked_per_lookup: Ratio = None
    esp_ok: Count = 0
    esp_drop: Count = 0


class Trial(Model):
    """One install → delete → drain of one target."""

    trial: int
    issue_tick: int
    delete_tick: int
    linked_after_delete: int | None = None
    allocated_after_delete: int | None = None
    timed_out: bool = False
    completed_at: float | None = None
    measures: Measures
    series: list[list[int]] = []
    records: list[TickRecord] = []


class Check(Model):
    """One expectation of the lab against one trial's measure."""

    name: str
    expected: str
    measured: str
    status: Literal["met", "missed", "unresolved"]

    @property
    def ok(self) -> bool:
        return self.status == "met"


Verdict = Literal["PASS", "FAIL", "UNRESOLVED", "INFRA-ERROR", "PENDING"]


class InfraFailure(Model):
    """Where a target broke: the phase, and what happened."""

    phase: str
    message: str


class TargetResult(Model):
    """One target: what it is, its verdict, its summary measures and every trial."""

    name: str
    build: str
    kind: str
    labels: dict[str, str] = {}
    tick_ms: int
    # spdlab ran every tick in lock-step with traffic and delete: a rerun of the same seed
    # gives the same series and measures, so two runs are identical or changed, not samples.
    deterministic: bool = False
    address: str = ""
    synthetic: bool = False
    tick_meaning: str = "a timer tick"
    verdict: Verdict = "PENDING"
    reason: str = ""
    infra: InfraFailure | None = None
    checks: list[Check] = []
    measures: Measures = Measures()  # drain_ticks: the median over trials; the rest: the last
    drain_spread: tuple[int, int] | None = None
    drain_seconds: float | None = None  # the median drain at this target's tick length
    completed_at: float | None = None
    trials: list[Trial] = []


class MeasureTest(Model):
    """One measure of a comparison over the trials of both sides (orchestrator/drain/stats.py)."""

    measure: str
    base: list[float | None]  # per trial; None: never completed
    patched: list[float | None]
    median_base: float | None
    median_patched: float | None
    p_value: float | None  # None: fewer than 2 trials on a side
    interval: tuple[float, float] | None  # of median(patched) − median(base); None: not given
    tolerance: float
    significant: bool
    within_tolerance: bool


Across = Literal["patch", "hardware", "baseline"]


class Comparison(Model):
    """What a patch changed: a patched build against its base.

    across "hardware": one build, base and patched are two hardware labels; "baseline":
    one build and label, base is the baseline run.
    """

    base: str
    patched: str
    verdict: Literal["no effect", "fixed", "regressed", "changed", "undecided"]
    detail: str
    control: bool = False  # the patched build is a synthetic positive control
    mode: str | None = None  # the delete mode, when one document holds several
    across: Across = "patch"
    hardware: str | None = None  # the label both sides share (across patch, baseline)
    base_hardware: str | None = None  # across hardware: the two labels
    patched_hardware: str | None = None
    observed: str | None = None  # undecided: what the medians alone suggest
    method: str = ""
    k: tuple[int, int] = (0, 0)  # trials of base and patched
    tests: list[MeasureTest] = []
    timing: dict[str, float | None] = {}  # across hardware: median drain seconds per label


class Baseline(Model):
    """`--baseline RUN`: every (build, hardware) against the same in the baseline run."""

    run_id: str
    comparisons: list[Comparison] = []
    changed: list[str] = []  # "build@hardware" whose drain changed significantly
    undecided: list[str] = []
    missing: list[str] = []  # in this run and not in the baseline


class LabRef(Model):
    name: str
    file: str = ""


class RunResult(Model):
    """runs/<id>/result.json."""

    schema_: Literal["spdlab.result/2"] = Field(SCHEMA, alias="schema")
    run_id: str
    complete: bool = False
    interrupted: bool = False
    phase: Phase = Phase.NEW
    error: str | None = None
    started: str
    finished: str | None = None
    tick_ms: int
    lab: LabRef
    scenario: Scenario
    versions: Versions
    targets: list[TargetResult] = []
    comparisons: list[Comparison] = []
    baseline: Baseline | None = None
    traffic: list[dict[str, Any]] = []

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    def target(self, name: str) -> TargetResult:
        return next(t for t in self.targets if t.name == name)
