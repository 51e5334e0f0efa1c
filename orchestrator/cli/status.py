"""`spdlab status [RUN]`: a table of targets: build, PID, health, policies. Exit 1 if unhealthy.

Only a run that is up is asked: any other says what state.json recorded (which run,
its phase and since when) and that no lab is up. `--all` lists every run with its state.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from orchestrator.errors import ConfigError


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("status", help="show a run's targets", description=__doc__)
    p.add_argument("run", metavar="RUN", nargs="?", help="run id or prefix (default: latest)")
    p.add_argument("--all", action="store_true", help="list every recorded run with its state")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from orchestrator.targets.session import LabRun

    if args.all and args.run:
        raise ConfigError("give RUN or --all, not both")
    if args.all:
        return _all(args.json)
    lr = LabRun.open(args.run)
    if lr.state.phase != "up":
        return _recorded(lr.state, args.json)
    health = lr.health()
    if args.json:
        doc = {"run_id": lr.run_id, "phase": "up", "targets": [h.as_dict() for h in health]}
        print(json.dumps(doc))
    else:
        _table(lr.run_id, health)
    return 0 if health and all(h.healthy for h in health) else 1


def _table(run_id: str, health: list[Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"run {run_id} (up)")
    for col in ("target", "kind", "build", "pid", "health", "policies", "note"):
        right = col in ("pid", "policies")
        table.add_column(col, justify="right" if right else "left", no_wrap=col != "note")
    for h in health:
        mark = "[green]healthy[/]" if h.healthy else "[red]unhealthy[/]"
        table.add_row(h.name, h.kind, h.build, str(h.pid or "-"), mark,
                      "-" if h.policies is None else str(h.policies), h.reason)  # fmt: skip
    Console().print(table)


def state_line(st: Any) -> str:
    """What state.json says of a run that is not up, in one line."""
    doc, phase = st.doc, st.phase
    rid, lab = doc.get("run_id", st.path.parent.name), doc.get("lab_name", "?")
    if phase == "down":
        left = doc.get("down_problems") or []
        rest = f", {len(left)} left over: spdlab down {rid}" if left else ": no lab is up"
        why = f" ({doc['error']})" if doc.get("error") else ""
        return f"run {rid} (lab {lab}) is down since {st.since}{why}{rest}"
    if _alive(doc.get("pid")):
        return f"run {rid} (lab {lab}) is {phase} since {st.since}: spdlab {doc['pid']} is at it"
    return (f"run {rid} (lab {lab}) stopped while {phase} (since {st.since}): no lab is up; "
            f"spdlab down {rid} removes what it left")  # fmt: skip


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _recorded(st: Any, as_json: bool) -> int:
    if as_json:
        print(json.dumps({"run_id": st.doc.get("run_id"), "phase": st.phase, "since": st.since,
                          "note": state_line(st), "targets": []}))  # fmt: skip
    else:
        print(state_line(st))
    return 1


def _all(as_json: bool) -> int:
    from orchestrator.runs import RunDir, list_runs
    from orchestrator.targets.state import StateFile

    rows = []
    for rid in list_runs():
        try:
            st = StateFile.load(RunDir(rid).state_file)
        except (OSError, ValueError) as e:
            rows.append({"run_id": rid, "lab": "?", "phase": "unreadable", "since": "?",
                         "targets": 0, "note": str(e)})  # fmt: skip
            continue
        note = st.doc.get("error") or ("" if st.phase in ("up", "down") else state_line(st))
        rows.append({"run_id": rid, "lab": st.doc.get("lab_name", "?"), "phase": st.phase,
                     "since": st.since, "targets": len(st.targets), "note": note})  # fmt: skip
    if as_json:
        print(json.dumps({"runs": rows}))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(rows)} runs")
    for col in ("run_id", "lab", "phase", "since", "targets", "note"):
        table.add_column(col, justify="right" if col == "targets" else "left",
                         no_wrap=col != "note")  # fmt: skip
    for r in rows:
        table.add_row(*(str(r[c]) for c in ("run_id", "lab", "phase", "since", "targets", "note")))
    Console().print(table)
    return 0
