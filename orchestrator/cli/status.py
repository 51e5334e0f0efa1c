"""`spdlab status [RUN]`: a table of targets: build, PID, health, policies. Exit 1 if unhealthy."""

from __future__ import annotations

import argparse
import json


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("status", help="show a run's targets", description=__doc__)
    p.add_argument("run", metavar="RUN", nargs="?", help="run id or prefix (default: latest)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from orchestrator.targets.session import LabRun

    lr = LabRun.open(args.run)
    health = lr.health()
    phase = lr.state.phase
    if args.json:
        doc = {"run_id": lr.run_id, "phase": phase, "targets": [h.as_dict() for h in health]}
        print(json.dumps(doc))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"run {lr.run_id} ({phase})")
        for col in ("target", "kind", "build", "pid", "health", "policies", "note"):
            right = col in ("pid", "policies")
            table.add_column(col, justify="right" if right else "left", no_wrap=col != "note")
        for h in health:
            mark = "[green]healthy[/]" if h.healthy else "[red]unhealthy[/]"
            table.add_row(h.name, h.kind, h.build, str(h.pid or "-"), mark,
                          "-" if h.policies is None else str(h.policies), h.reason)  # fmt: skip
        Console().print(table)
    return 0 if health and all(h.healthy for h in health) else 1
