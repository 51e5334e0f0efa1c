"""Taking a run down: the targets (targets/session.py), then what it published (export/)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from orchestrator.errors import WriteError
from orchestrator.export.unpublish import unpublish


def down(lr: Any) -> list[str]:
    """Tear down everything recorded and withdraw the run's metrics; returns problems."""
    problems = lr.down()
    problems += unpublish(lr)
    if problems:
        with contextlib.suppress(WriteError):  # already among the problems
            lr.state.set(down_problems=problems)
    return problems


def require_record(base: Path) -> None:
    """Raise PreflightError when the runs folder cannot take state.json: `down` then removes
    nothing, since a record still saying "up" would point at what is gone."""
    from orchestrator.targets import preflight as pf

    pf.require([pf.writable(base, need=0)])


def is_down(state: Any) -> bool:
    """The run was taken down and nothing was left: `down` and `status` leave it be."""
    return state.phase == "down" and not state.doc.get("down_problems")


def down_all(base: Path | None = None) -> dict[str, list[str]]:
    """Every recorded run that is not down yet, down; problems per run id."""
    from orchestrator.runs import list_runs, runs_dir
    from orchestrator.targets.session import LabRun

    runs = [lr for lr in (LabRun.open(rid, base=base) for rid in list_runs(base))
            if not is_down(lr.state)]  # fmt: skip
    if runs:
        require_record(base or runs_dir())
    return {lr.run_id: down(lr) for lr in runs}
