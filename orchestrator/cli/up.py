"""`spdlab up LAB`: bring every target of a lab up; prints the run id."""

from __future__ import annotations

import argparse
import json
import sys

from orchestrator.lab import LabError, load_lab


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("up", help="bring a lab up", description=__doc__)
    p.add_argument("lab", metavar="LAB", help="the lab file (YAML)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    try:
        lab = load_lab(args.lab)
    except LabError as e:
        print(str(e), file=sys.stderr)
        return e.exit_code
    from rich.console import Console

    from orchestrator.cli.bars import bars
    from orchestrator.interrupts import interrupts
    from orchestrator.progress import RichProgress
    from orchestrator.run.context import Options
    from orchestrator.run.preflight import unmet
    from orchestrator.targets.preflight import require
    from orchestrator.targets.session import LabRun

    require(unmet(lab, Options()))  # nothing is created when one fails
    console = Console(stderr=True)
    # Long steps poll the flag; LabRun.up tears down what it made, then raises.
    with interrupts(raise_first=False) as flag:
        try:
            with bars(console, disable=args.json) as p:
                lr = LabRun.up(lab, progress=RichProgress(p), cancel=flag.is_set)
        except KeyboardInterrupt:
            console.print("spdlab: interrupted: everything created was torn down")
            return flag.exit_code
    from orchestrator.export.exporter import DEFAULT_ADDR
    from orchestrator.export.file_sd import write_file_sd

    # Where `spdlab serve` exports by default: Prometheus picks the run up from here.
    write_file_sd(lr.run.path, DEFAULT_ADDR, lab.name)
    if args.json:
        print(json.dumps({"run_id": lr.run_id, "run_dir": str(lr.run.path),
                          "targets": [h.as_dict() for h in lr.health()],
                          "failed": lr.failed}))  # fmt: skip
    else:
        print(lr.run_id)
        up = len(lab.targets) - len(lr.failed)
        console.print(f"lab '{lab.name}' is up: {up} targets, run {lr.run_id}")
        for name, why in sorted(lr.failed.items()):
            console.print(f"{name}: INFRA-ERROR: {why}")
    if lr.failed:
        return 3
    return 0
