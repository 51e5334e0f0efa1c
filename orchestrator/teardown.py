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


def is_down(state: Any) -> bool:
    """The run was taken down and nothing was left: `down` and `status` leave it be."""
    return state.phase == "down" and not state.doc.get("down_problems")


def down_all(base: Path | None = None) -> dict[str, list[str]]:
    """Every recorded run that is not down yet, down; problems per run id."""
    from orchestrator.runs import list_runs
    from orchestrator.targets.session import LabRun

    runs = (LabRun.open(rid, base=base) for rid in list_runs(base))
    return {lr.run_id: down(lr) for lr in runs if not is_down(lr.state)}
