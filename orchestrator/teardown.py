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


def down_all(base: Path | None = None) -> dict[str, list[str]]:
    """Every recorded run down; problems per run id."""
    from orchestrator.runs import list_runs
    from orchestrator.targets.session import LabRun

    return {rid: down(LabRun.open(rid, base=base)) for rid in list_runs(base)}
