"""`spdlab run LAB`: up, install, reference, mass delete, measure the drain, judge, down."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from orchestrator.lab import LabError, load_lab

EXIT_PASS, EXIT_FAIL, EXIT_INFRA = 0, 1, 3


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run", help="run a lab's scenario and judge every target's drain", description=__doc__
    )
    p.add_argument("lab", metavar="LAB", help="the lab file (YAML)")
    p.add_argument("--trials", type=int, help="repeat the measured phases K times")
    p.add_argument("--keep", action="store_true", help="leave the lab up afterwards")
    p.add_argument("--logx", action="store_true", help="log-scale ticks in drain.png")
    p.add_argument(
        "--metrics-addr",
        default="127.0.0.1:9464",
        help="serve Prometheus metrics here during the run ('' = off)",
    )
    p.add_argument("--pushgateway", metavar="URL", help="push the run's summary here at the end")
    p.add_argument("--json", action="store_true", help="print result.json's verdicts as JSON")
    p.set_defaults(func=run)


class RichReporter:
    """Progress bars per phase, log lines above them."""

    def __init__(self, progress: Any):
        self.p = progress
        self.tasks: dict[str, Any] = {}

    def phase(self, name: str, total: int | None = None) -> None:
        if name not in self.tasks:
            self.tasks[name] = self.p.add_task(name, total=total)

    def advance(self, name: str, n: int = 1) -> None:
        if name in self.tasks:
            self.p.advance(self.tasks[name], n)

    def update(self, name: str, completed: int) -> None:
        if name in self.tasks:
            self.p.update(self.tasks[name], completed=completed)

    def log(self, msg: str) -> None:
        self.p.console.print(msg)


@contextmanager
def interrupts() -> Iterator[None]:
    """The first SIGINT or SIGTERM interrupts; later ones are ignored so teardown finishes."""
    seen = []

    def handler(signum: int, frame: Any) -> None:
        if not seen:
            seen.append(signum)
            raise KeyboardInterrupt

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def exit_code(doc: dict[str, Any]) -> int:
    verdicts = {t["verdict"] for t in doc["targets"]}
    if "FAIL" in verdicts:
        return EXIT_FAIL
    if verdicts - {"PASS"}:
        return EXIT_INFRA
    return EXIT_PASS


def run(args: argparse.Namespace) -> int:
    try:
        lab = load_lab(args.lab)
    except LabError as e:
        print(str(e), file=sys.stderr)
        return e.exit_code
    if args.trials is not None and args.trials < 1:
        print(f"spdlab: --trials: must be at least 1, not {args.trials}", file=sys.stderr)
        return 2
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from orchestrator.run.job import RunJob

    console = Console(stderr=True)
    exporter = _Exporter(args.metrics_addr, console)
    cols = (
        TextColumn("{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    job = None
    try:
        with interrupts(), Progress(*cols, console=console, disable=args.json) as p:
            job = RunJob(
                lab,
                trials=args.trials,
                keep=args.keep,
                logx=args.logx,
                reporter=RichReporter(p),
                on_up=exporter.start,
                before_down=exporter.linger,
            )
            doc = job.execute()
    except KeyboardInterrupt:
        rid = job.doc.get("run_id") if job else None
        where = f" (run {rid})" if rid else ""
        console.print(f"spdlab: interrupted{where}: torn down, result.json marked incomplete")
        return 128 + signal.SIGINT
    finally:
        exporter.stop()
    if args.pushgateway:
        _push(args.pushgateway, job, args.keep)
    if args.json:
        print(
            json.dumps(
                {k: doc[k] for k in ("run_id", "complete", "comparisons")}
                | {"targets": [_brief(t) for t in doc["targets"]]},
                indent=1,
            )
        )
    else:
        from orchestrator.cli.compare import render

        # Logs and CI capture output too: keep the table readable there.
        render(doc, Console(width=None if sys.stdout.isatty() else 140), job.run_dir)
    return exit_code(doc)


def _brief(t: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "name",
        "build",
        "verdict",
        "reason",
        "drain_ticks",
        "drain_seconds",
        "free_ticks",
        "removed_by_delete",
        "premature_frees",
        "use_after_free",
    )
    return {k: t.get(k) for k in keys}


class _Exporter:
    """The run's Prometheus endpoint, if the exporter is available and wanted."""

    def __init__(self, addr: str, console: Any):
        self.addr = addr
        self.console = console
        self.exp: Any = None

    def start(self, lr: Any) -> None:
        if not self.addr:
            return
        from orchestrator.export.exporter import Exporter
        from orchestrator.export.file_sd import write_file_sd

        self.run_dir = lr.run.path
        self.exp = Exporter.for_run(lr.run.path)
        bound = self.exp.start(self.addr)
        # Prometheus finds the run through the file_sd list (monitoring/prometheus).
        write_file_sd(lr.run.path, bound, lr.lab.name if lr.lab else "")
        self.console.print(f"metrics: http://{bound}/metrics")

    def linger(self) -> None:
        """Let Prometheus scrape the final result while the targets are still up."""
        if self.exp is not None:
            self.exp.linger()

    def stop(self) -> None:
        if self.exp is not None:
            from orchestrator.export.file_sd import remove_file_sd

            self.exp.stop()
            remove_file_sd(self.run_dir)
            self.exp = None


def _push(url: str, job: Any, keep: bool) -> None:
    """One group per run; a kept lab's `down` deletes it again."""
    from orchestrator.export.pushgateway import push_run_summary

    push_run_summary(url, job.run_dir)
    if keep:
        job.lr.state.set(pushgateway=url)
