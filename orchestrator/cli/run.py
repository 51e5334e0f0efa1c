"""`spdlab run LAB`: up, install, reference, mass delete, measure the drain, judge, down."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from orchestrator.lab import LabError, load_lab

EXIT_PASS, EXIT_FAIL, EXIT_INFRA = 0, 1, 3
BRIEF = ("name", "build", "verdict", "reason", "drain_seconds")


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


def exit_code(res: Any) -> int:
    """0 when every target passed, 1 on any FAIL, 3 otherwise (INFRA-ERROR, UNRESOLVED)."""
    verdicts = {t.verdict for t in res.targets}
    if "FAIL" in verdicts:
        return EXIT_FAIL
    return EXIT_INFRA if verdicts - {"PASS"} else EXIT_PASS


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

    console = Console(stderr=True)
    ctx, code = _execute(lab, args, console)
    if code is not None:
        return code
    _report(ctx, args, console)
    return exit_code(ctx.result)


def _execute(lab: Any, args: argparse.Namespace, console: Any) -> tuple[Any, int | None]:
    """Run the engine under the one interrupt path; a code when it was interrupted."""
    from orchestrator.cli.bars import bars
    from orchestrator.interrupts import interrupts
    from orchestrator.progress import RichProgress
    from orchestrator.run import engine
    from orchestrator.run.context import Options, RunContext

    exporter = _Exporter(args.metrics_addr, console)
    opts = Options(trials=args.trials, keep=args.keep, logx=args.logx, on_up=exporter.start,
                   before_down=exporter.linger, metrics_addr=args.metrics_addr,
                   pushgateway=args.pushgateway)  # fmt: skip
    ctx = RunContext(lab, opts)
    try:
        with interrupts() as flag, bars(console, disable=args.json) as p:
            ctx.progress = RichProgress(p)
            engine.execute(ctx)
    except KeyboardInterrupt:
        where = f" (run {ctx.result.run_id})" if ctx.result else ""
        console.print(f"spdlab: interrupted{where}: torn down, result.json marked incomplete")
        return ctx, flag.exit_code
    finally:
        exporter.stop()
    return ctx, None


def _report(ctx: Any, args: argparse.Namespace, console: Any) -> None:
    from rich.console import Console

    res = ctx.result
    if args.pushgateway:
        _push(args.pushgateway, ctx, args.keep)
    if args.json:
        targets = [t.model_dump(mode="json", include=set(BRIEF)) | {
            "measures": t.measures.model_dump(mode="json")} for t in res.targets]  # fmt: skip
        cs = [c.model_dump(mode="json") for c in res.comparisons]
        doc = {"run_id": res.run_id, "complete": res.complete, "comparisons": cs}
        print(json.dumps(doc | {"targets": targets}, indent=1))
        return
    from orchestrator.cli.compare import render

    # Logs and CI capture output too: keep the table readable there.
    render(res, Console(width=None if sys.stdout.isatty() else 140), ctx.run_dir)


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


def _push(url: str, ctx: Any, keep: bool) -> None:
    """One group per run; a kept lab's `down` deletes it again."""
    from orchestrator.export.pushgateway import push_run_summary

    push_run_summary(url, ctx.run_dir)
    if keep:
        ctx.lr.state.set(pushgateway=url)
