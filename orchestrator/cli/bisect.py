"""`spdlab bisect LAB --build B`: the first patch of B's series that changes the drain.

Every prefix of the series (the bare tree or kernel, then one patch more each) runs the
lab's scenario side by side, K trials each; consecutive prefixes are compared with the
statistics of `spdlab compare`.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from orchestrator.lab import LabError, load_lab, read_lab

EXIT_FOUND, EXIT_NONE, EXIT_UNDECIDED = 0, 1, 3


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bisect", help="find the patch of a build's series that changes the drain",
        description=__doc__,
    )  # fmt: skip
    p.add_argument("lab", metavar="LAB", help="the lab file (YAML)")
    p.add_argument("--build", required=True, metavar="B", help="the build whose series to bisect")
    p.add_argument("--trials", type=int, help="trials per prefix (default: the lab's)")
    p.add_argument("--json", action="store_true", help="print the steps as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from orchestrator.run import bisect

    try:
        lab = load_lab(args.lab)
        d, _ = read_lab(args.lab)
    except LabError as e:
        print(str(e), file=sys.stderr)
        return e.exit_code
    if args.trials is not None and args.trials < 1:
        print(f"spdlab: --trials: must be at least 1, not {args.trials}", file=sys.stderr)
        return 2
    blab, series, names = bisect.bisect_lab(d, lab, args.build)
    ctx = _execute(blab, args)
    out = bisect.steps(ctx.result, series, names)
    from orchestrator import atomic

    atomic.write_text(ctx.run_dir / "bisect.json", out.model_dump_json(indent=1) + "\n")
    if args.json:
        print(json.dumps(out.model_dump(mode="json"), indent=1))
    else:
        render(out)
    if out.first is not None:
        return EXIT_FOUND
    return EXIT_UNDECIDED if out.undecided else EXIT_NONE


def _execute(lab: Any, args: argparse.Namespace) -> Any:
    from rich.console import Console

    from orchestrator.cli.bars import bars
    from orchestrator.interrupts import interrupts
    from orchestrator.progress import RichProgress
    from orchestrator.run import engine
    from orchestrator.run.context import Options, RunContext

    console = Console(stderr=True)
    ctx = RunContext(lab, Options(trials=args.trials))
    with interrupts(), bars(console, disable=args.json) as p:
        ctx.progress = RichProgress(p)
        engine.execute(ctx)
    return ctx


def render(out: Any) -> None:
    """git bisect's way: each step, then the first bad patch."""
    from rich.console import Console

    from orchestrator.cli.compare import stats_line

    console = Console(width=None if sys.stdout.isatty() else 140)

    def c_print(text: str) -> None:  # one line per step however wide: CI logs are grepped
        console.print(text, soft_wrap=True)

    n = len(out.steps) - 1
    patches = f"{n} patch" + ("es" if n != 1 else "")
    c_print(f"bisect {out.build}: {patches}, {n + 1} builds, K={out.trials} each "
            f"(run {out.run_id})")  # fmt: skip
    for i, s in enumerate(out.steps):
        if s.comparison is None:
            c_print(f"  {i}/{n} {s.build}: the series' base" if i == 0 else
                    f"  {i}/{n} {s.build} (+ {s.patch}): not measured")  # fmt: skip
            continue
        cmp = s.comparison
        c_print(f"  {i}/{n} {s.build} (+ {s.patch}): [bold]{cmp.verdict}[/] against "
                f"{cmp.base} ({cmp.detail})")  # fmt: skip
        c_print(f"      [dim]{stats_line(cmp)}[/]")
    if out.first is None:
        what = "undecided at " + ", ".join(out.undecided) if out.undecided else "none"
        c_print(f"no patch changes the drain ({what})")
        return
    s = out.steps[out.first]
    bad = "bad patch" if s.comparison.verdict == "regressed" else "patch that changes the drain"
    c_print(f"[bold]{s.patch} is the first {bad}[/]")
    c_print(f"patch {out.first}/{n}: {s.file}\nsha256 {s.sha256}")
    c_print(f"    {s.comparison.verdict}: {s.comparison.detail}")
