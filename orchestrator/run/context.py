"""RunContext — what the phases of one run share: the lab, its targets, the result so far."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator import atomic
from orchestrator import kinds as registry
from orchestrator.delete import Gateway, Strategy, strategy
from orchestrator.drain.record import Drain
from orchestrator.errors import InfraError
from orchestrator.export import result as store
from orchestrator.lab.resolve import ResolvedLab, TargetSpec
from orchestrator.progress import NullProgress, Progress
from orchestrator.result.model import InfraFailure, RunResult, Trial
from orchestrator.run.lockstep import LockStep
from orchestrator.run.phases import RunPhases
from orchestrator.run.wallclock import WallClock


@dataclass
class Target:
    """One target's state across the run's trials."""

    spec: TargetSpec
    gw: Gateway | None = None
    drain: Drain | None = None
    trials: list[Trial] = field(default_factory=list)
    infra: InfraFailure | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def alive(self) -> bool:
        return self.infra is None

    def unobservable(self, mode: str) -> dict[str, str]:
        return registry.unobservable(self.spec.kind, self.spec.build, mode)


@dataclass
class Options:
    """How `spdlab run` was asked to run."""

    trials: int | None = None
    keep: bool = False
    linear: bool = False  # drain.png's tick axis; default symlog
    metrics_addr: str = ""  # the exporter's address, checked free before up
    pushgateway: str | None = None  # checked to answer before up
    on_up: Callable[[Any], None] | None = None
    before_down: Callable[[], object] | None = None  # result.json is final; an exporter lingers
    baseline: RunResult | None = None  # `--baseline RUN`: compared with at judged


@dataclass
class RunContext:
    """RunContext — one run's shared state; each phase module reads and extends it."""

    lab: ResolvedLab
    opts: Options = field(default_factory=Options)
    progress: Progress = field(default_factory=NullProgress)
    phases: RunPhases = field(default_factory=RunPhases)
    lr: Any = None  # the LabRun, once up
    driver_progress: Any = None  # what the LabRun's drivers report to
    result: RunResult | None = None
    traffic: Any = None  # this trial's senders: traffic host key → (TrafficRun, target names)
    trial: int = 0
    targets: list[Target] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.targets = [Target(t) for t in self.lab.targets]
        self.strategy: Strategy = strategy(self.lab.scenario.delete)
        # Who runs the ticks: each netkeyd's timer, or spdlab in lock-step (deterministic).
        self.clock: WallClock | LockStep = (
            LockStep() if self.lab.scenario.deterministic else WallClock()
        )

    @property
    def trials(self) -> int:
        return self.opts.trials or self.lab.scenario.trials

    @property
    def tick_ms(self) -> int:
        return min(t.tick_ms for t in self.lab.targets)

    @property
    def run_dir(self) -> Path:
        return self.lr.run.path

    def live(self) -> list[Target]:
        return [t for t in self.targets if t.alive]

    def stats(self, t: Target) -> Any:
        return self.lr.stats_endpoint(t.name)

    def each(self, step: str, fn: Callable[[Target], Any], targets: list[Target] | None = None,
             ) -> dict[str, Any]:  # fmt: skip
        """fn on every live target; a target that breaks is INFRA-ERROR, the rest go on."""
        out = {}
        for t in self.live() if targets is None else targets:
            out[t.name] = self.guard(t, step, fn)
            self.progress.advance(step, 1)
        return out

    def guard(self, t: Target, step: str, fn: Callable[[Target], Any]) -> Any:
        try:
            return fn(t)
        except (InfraError, OSError, RuntimeError) as e:
            phase = self.phases.current.value if self.phases.current else step
            on = f" on lab host {t.spec.host}" if t.spec.host else ""
            t.infra = InfraFailure(phase=phase, message=f"{step}{on}: {e}")
            self.progress.log(f"{t.name}: INFRA-ERROR in {phase} ({step}): {e}")
            return None

    def save(self) -> None:
        if self.result is not None:
            self.result.phase = self.phases.done
            store.write(self.run_dir / "result.json", self.result)

    def target_dir(self, t: Target) -> Path:
        d = self.run_dir / "targets" / t.name
        d.mkdir(parents=True, exist_ok=True)
        return d

    def write_text(self, path: Path, text: str) -> None:
        atomic.write_text(path, text)
