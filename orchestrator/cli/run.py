"""`spdlab run LAB`: up, install, reference, mass delete, measure the drain, judge, down.

A lab whose `delete:` lists several modes runs once per mode, each a run of its own.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from orchestrator.errors import ConfigError
from orchestrator.lab import LabError, load_lab
from orchestrator.lab.model import DELETE_MODES

EXIT_PASS, EXIT_FAIL, EXIT_INFRA, EXIT_CHANGED = 0, 1, 3, 4
BRIEF = ("name", "build", "verdict", "reason", "drain_seconds")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run", help="run a lab's scenario and judge every target's drain", description=__doc__
    )
    p.add_argument("lab", metavar="LAB", help="the lab file (YAML)")
    p.add_argument("--trials", type=int, help="repeat the measured phases K times")
    p.add_argument("--delete", metavar="MODE", action="append", choices=DELETE_MODES,
                   help="run this delete mode instead of the lab's scenario.delete "
                   "(repeat for several; one of: " + ", ".join(DELETE_MODES) + ")")  # fmt: skip
    p.add_argument("--keep", action="store_true", help="leave the lab up afterwards")
    p.add_argument(
        "--deterministic",
        action="store_true",
        help="spdlab drives every tick, in lock-step with traffic and delete",
    )
    p.add_argument("--seed", type=int, help="SPIs and keys, so packet contents (default 0)")
    p.add_argument("--linear", action="store_true",
                   help="a linear tick axis in drain.png (default: symlog)")  # fmt: skip
    p.add_argument(
        "--metrics-addr",
        default="127.0.0.1:9464",
        help="serve Prometheus metrics here during the run ('' = off)",
    )
    p.add_argument("--pushgateway", metavar="URL", help="push the run's summary here at the end")
    p.add_argument("--json", action="store_true", help="print result.json's verdicts as JSON")
    p.add_argument("--baseline", metavar="RUN",
                   help="compare every build and hardware label with this earlier run's; "
                   f"exit {EXIT_CHANGED} when any changed (and nothing failed)")  # fmt: skip
    p.set_defaults(func=run)


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Scenario fields the command line sets over the lab file's."""
    out: dict[str, Any] = {"deterministic": True} if args.deterministic else {}
    if getattr(args, "delete", None):  # validated by argparse's choices; once each, in order
        out["delete"] = list(dict.fromkeys(args.delete))
    return out | ({"seed": args.seed} if args.seed is not None else {})


def exit_code(*results: Any) -> int:
    """0 when every target passed, 1 on any FAIL, 3 otherwise (INFRA-ERROR, UNRESOLVED);
    4 when all passed but a build changed from the baseline."""
    verdicts = {t.verdict for res in results for t in res.targets}
    if "FAIL" in verdicts:
        return EXIT_FAIL
    if verdicts - {"PASS"}:
        return EXIT_INFRA
    changed = any(res.baseline is not None and res.baseline.changed for res in results)
    return EXIT_CHANGED if changed else EXIT_PASS


def run(args: argparse.Namespace) -> int:
    if args.trials is not None and args.trials < 1:
        print(f"spdlab: --trials: must be at least 1, not {args.trials}", file=sys.stderr)
        return 2
    if args.seed is not None and not 0 <= args.seed < 2**32:
        print(f"spdlab: --seed: must be 0 to 4294967295, not {args.seed}", file=sys.stderr)
        return 2
    try:
        lab = load_lab(args.lab, scenario=overrides(args))
    except LabError as e:
        print(str(e), file=sys.stderr)
        return e.exit_code
    if args.metrics_addr:
        from orchestrator.export.exporter import parse_addr

        try:  # a typo is an error before anything is up; a busy port is not (_Exporter)
            parse_addr(args.metrics_addr)
        except ConfigError as e:
            print(f"spdlab: {e}", file=sys.stderr)
            return e.exit_code
    if args.baseline:
        from orchestrator.cli.compare import load_baseline

        args.baseline = load_baseline(args.baseline)  # before anything is up
    if args.keep and len(lab.modes) > 1:
        print(f"spdlab: --keep: scenario.delete lists {len(lab.modes)} modes, each a lab of its "
              "own; keep one mode", file=sys.stderr)  # fmt: skip
        return 2
    from rich.console import Console

    console = Console(stderr=True)
    done, docs, pushed = [], [], True
    for one in lab.each_mode():
        ctx, code = _execute(one, args, console)
        if code is not None:
            return code
        doc, ok = _report(ctx, args, console)
        docs.append(doc)
        done.append(ctx.result)
        pushed = pushed and ok
    if args.json:
        print(json.dumps(docs[0] if len(docs) == 1 else {"runs": docs}, indent=1))
    return max(exit_code(*done), 0 if pushed else EXIT_INFRA)


def _execute(lab: Any, args: argparse.Namespace, console: Any) -> tuple[Any, int | None]:
    """Run the engine under the one interrupt path; a code when it was interrupted."""
    from orchestrator.cli.bars import bars
    from orchestrator.interrupts import interrupts
    from orchestrator.progress import RichProgress
    from orchestrator.run import engine
    from orchestrator.run.context import Options, RunContext

    exporter = _Exporter(args.metrics_addr, console)
    opts = Options(trials=args.trials, keep=args.keep, linear=args.linear, on_up=exporter.start,
                   before_down=exporter.linger, metrics_addr=args.metrics_addr,
                   pushgateway=args.pushgateway, baseline=args.baseline or None)  # fmt: skip
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


def _report(ctx: Any, args: argparse.Namespace, console: Any) -> tuple[dict[str, Any] | None, bool]:
    """Print the verdicts (with --json, return them as a document instead) and push the
    summary; False if the push failed (said on stderr: the run itself is complete, and its
    result.json stands)."""
    from rich.console import Console

    from orchestrator.errors import InfraError

    res = ctx.result
    pushed = True
    if args.pushgateway:
        try:
            _push(args.pushgateway, ctx, args.keep)
        except InfraError as e:
            print(f"spdlab: {e}; the run is complete, its result is in {ctx.run_dir}",
                  file=sys.stderr)  # fmt: skip
            pushed = False
    if args.json:
        targets = [t.model_dump(mode="json", include=set(BRIEF)) | {
            "measures": t.measures.model_dump(mode="json")} for t in res.targets]  # fmt: skip
        cs = [c.model_dump(mode="json") for c in res.comparisons]
        doc = {"run_id": res.run_id, "complete": res.complete, "delete": res.scenario.delete,
               "comparisons": cs}  # fmt: skip
        if res.baseline is not None:
            doc["baseline"] = res.baseline.model_dump(mode="json")
        return doc | {"targets": targets}, pushed
    from orchestrator.cli.compare import render

    # Logs and CI capture output too: keep the table readable there.
    render(res, Console(width=None if sys.stdout.isatty() else 140), ctx.run_dir)
    return None, pushed


class _Exporter:
    """The run's Prometheus endpoint, if the exporter is available and wanted."""

    def __init__(self, addr: str, console: Any):
        self.addr = addr
        self.console = console
        self.exp: Any = None

    def start(self, lr: Any) -> None:
        if not self.addr:
            return
        from orchestrator.errors import InfraError
        from orchestrator.export.exporter import Exporter
        from orchestrator.export.file_sd import write_file_sd

        self.run_dir = lr.run.path
        exp = Exporter.for_run(lr.run.path)
        try:
            bound = exp.start(self.addr)
        except InfraError as e:  # taken since preflight: the run goes on, unscraped
            print(f"spdlab: {e}; the run goes on without live metrics", file=sys.stderr)
            return
        self.exp = exp
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
