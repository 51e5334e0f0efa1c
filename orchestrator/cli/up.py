"""`spdlab up LAB`: bring every target of a lab up; prints the run id."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from contextlib import contextmanager

from orchestrator.lab import LabError, load_lab


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("up", help="bring a lab up", description=__doc__)
    p.add_argument("lab", metavar="LAB", help="the lab file (YAML)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)
    return p


class RichProgress:
    """One rich progress bar per phase."""

    def __init__(self, progress):
        self.bars = progress
        self.tasks: dict[str, int] = {}

    def phase(self, name: str, total: int) -> None:
        if name not in self.tasks:
            self.tasks[name] = self.bars.add_task(name, total=total)
        else:
            self.bars.update(self.tasks[name], total=total)

    def advance(self, name: str, n: int = 1) -> None:
        if name in self.tasks:
            self.bars.advance(self.tasks[name], n)


class StopFlag(threading.Event):
    """Set by SIGINT or SIGTERM; long steps poll it, then everything is torn down."""

    signum = signal.SIGINT

    def __call__(self, signum, frame) -> None:
        self.signum = signum
        self.set()


@contextmanager
def stop_flag():
    flag = StopFlag()
    old = {s: signal.signal(s, flag) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def run(args: argparse.Namespace) -> int:
    try:
        lab = load_lab(args.lab)
    except LabError as e:
        print(str(e), file=sys.stderr)
        return e.exit_code
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from orchestrator.targets.session import LabRun

    console = Console(stderr=True)
    columns = (TextColumn("{task.description:>8}"), BarColumn(), MofNCompleteColumn())
    with stop_flag() as flag:
        try:
            with Progress(*columns, TimeElapsedColumn(), console=console, disable=args.json) as p:
                lr = LabRun.up(lab, progress=RichProgress(p), cancel=flag.is_set)
        except KeyboardInterrupt:
            console.print("spdlab: interrupted: everything created was torn down")
            return 128 + int(flag.signum)
    from orchestrator.export.exporter import DEFAULT_ADDR
    from orchestrator.export.file_sd import write_file_sd

    # Where `spdlab serve` exports by default: Prometheus picks the run up from here.
    write_file_sd(lr.run.path, DEFAULT_ADDR, lab.name)
    if args.json:
        print(json.dumps({"run_id": lr.run_id, "run_dir": str(lr.run.path),
                          "targets": [h.as_dict() for h in lr.health()]}))  # fmt: skip
    else:
        print(lr.run_id)
        console.print(f"lab '{lab.name}' is up: {len(lab.targets)} targets, run {lr.run_id}")
    return 0
