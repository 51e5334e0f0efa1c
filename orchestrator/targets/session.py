"""LabRun — one run of a lab: its folder, its state file and one driver per target kind."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from orchestrator import atomic, buildsconf, proc
from orchestrator.errors import InfraError, WriteError
from orchestrator.lab.resolve import ResolvedLab
from orchestrator.runs import RunDir
from orchestrator.targets import cleanup
from orchestrator.targets.base import Health, Progress, TargetDriver
from orchestrator.targets.labnet import names_free
from orchestrator.targets.registry import driver_class
from orchestrator.targets.state import StateFile


class LabRun:
    """LabRun — brings a lab up, answers for its targets, and takes it down.

    Args:
        run: the run directory.
        state: its state file.
        lab: the resolved lab, if known (always after `up`; read back by `open`).
    """

    def __init__(
        self,
        run: RunDir,
        state: StateFile,
        lab: ResolvedLab | None = None,
        *,
        progress: Progress | None = None,
        cancel: Callable[[], bool] | None = None,
    ):
        self.run = run
        self.state = state
        self.lab = lab
        kinds = set(lab.kinds if lab else ())
        kinds |= {t["kind"] for t in state.targets.values() if "kind" in t}
        self.drivers: dict[str, TargetDriver] = {
            k: driver_class(k)(run, state, lab, progress=progress, cancel=cancel)
            for k in sorted(kinds)
        }

    @property
    def run_id(self) -> str:
        return self.run.run_id

    # ------------------------------------------------------------ up

    @classmethod
    def up(
        cls,
        lab: ResolvedLab,
        *,
        progress: Progress | None = None,
        cancel: Callable[[], bool] | None = None,
        base: Path | None = None,
    ) -> LabRun:
        """Provision and start every target of `lab` in a fresh run.

        On any failure or interrupt everything created so far is torn down and the error
        (or KeyboardInterrupt) is raised again.

        Returns:
            The running lab.
        """
        cancel = cancel or (lambda: False)
        run = RunDir.create(base, free=names_free)  # the bridge's names are this run's alone
        # Recorded before anything starts: how `down` finds every process of the run.
        marker = {"type": "processes", "env": proc.run_marker(run.path)}
        state = StateFile.create(
            run.state_file,
            run_id=run.run_id,
            lab=lab.path,
            lab_name=lab.name,
            pid=os.getpid(),
            resources=[marker],
        )
        if lab.path and Path(lab.path).is_file():
            shutil.copyfile(lab.path, run.path / "lab.yaml")
        (run.path / "lab.json").write_text(lab.model_dump_json(indent=1) + "\n")
        if lab.firmware:  # the lab's own netkeyd builds, for firmware/mkbuild.sh
            atomic.write_text(run.path / "builds.conf", buildsconf.conf_text(lab.firmware))
        lr = cls(run, state, lab, progress=progress, cancel=cancel)
        try:
            state.set(phase="provisioning")
            for d in lr.drivers.values():
                lr._checkpoint(cancel)
                d.provision()
            state.set(phase="starting")
            for d in lr.drivers.values():
                lr._checkpoint(cancel)
                d.start()
            lr._checkpoint(cancel)
            if lr.failed and len(lr.failed) == len(lab.targets):
                raise InfraError("; ".join(f"{n}: {w}" for n, w in sorted(lr.failed.items())),
                                 step="up")  # fmt: skip
            state.set(phase="up", failed=lr.failed)
        except BaseException as e:
            interrupted = isinstance(e, KeyboardInterrupt)
            state.set(phase="interrupted" if interrupted else "failed", error=str(e))
            lr.down()
            raise
        return lr

    @staticmethod
    def _checkpoint(cancel: Callable[[], bool]) -> None:
        if cancel():
            raise KeyboardInterrupt

    # ------------------------------------------------------------ existing runs

    @classmethod
    def open(cls, run_id: str | None = None, *, base: Path | None = None, **kw) -> LabRun:
        """An existing run by id or unique prefix; None: the latest one."""
        run = RunDir.find(run_id, base)
        state = StateFile.load(run.state_file)
        lab = None
        lab_json = run.path / "lab.json"
        if lab_json.exists():
            lab = ResolvedLab.model_validate_json(lab_json.read_text())
        return cls(run, state, lab, **kw)

    def targets(self) -> list[str]:
        return sorted(self.state.targets)

    @property
    def spawn_env(self) -> dict[str, str]:
        """The environment of every process the run starts (it carries the run's marker)."""
        return proc.run_env(self.run.path)

    def record_process(self, pid: int, match: str, what: str) -> None:
        """Record a started process by PID and a string its command line holds."""
        self.state.record({"type": "process", "pid": pid, "match": match, "what": what})

    def driver(self, name: str) -> TargetDriver:
        kind = self.state.targets[name]["kind"]
        return self.drivers[kind]

    def pfkey_endpoint(self, name: str):
        return self.driver(name).pfkey_endpoint(name)

    def stats_endpoint(self, name: str):
        return self.driver(name).stats_endpoint(name)

    @property
    def failed(self) -> dict[str, str]:
        """Targets that could not come up (a lab host lost, say), each with its reason."""
        return {n: why for d in self.drivers.values() for n, why in d.failed.items()}

    def traffic_host(self, name: str):
        """Where the traffic to `name` is sent from (targets.base.TrafficHost), or None."""
        return self.driver(name).traffic_host(name)

    def traffic_netns(self) -> str | None:
        """Where the traffic host sends from: the first driver that has one."""
        return next((ns for d in self.drivers.values() if (ns := d.traffic_netns())), None)

    def health(self) -> list[Health]:
        return [self.driver(n).health(n) for n in self.targets()]

    # ------------------------------------------------------------ down

    def down(self) -> list[str]:
        """Tear down everything recorded; idempotent. Returns what could not be removed.

        Every process of the run is stopped and awaited first, so nothing left running
        after a crash (a playbook, a sender) recreates or holds what is removed next.
        """
        cleanup.remove_all(self.state.resources("processes") + self.state.resources("process"))
        for d in self.drivers.values():
            with contextlib.suppress(InfraError):  # the sweep below judges what is left
                d.teardown()
        # Whatever no driver removed, and resources recorded before any target was known.
        problems = cleanup.remove_all(self.state.resources())
        try:
            self.state.set(phase="down", down_problems=problems)
        except WriteError as e:  # everything is down; only the record of it is missing
            problems.append(str(e))
        return problems
