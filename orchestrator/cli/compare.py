"""`spdlab compare RUN…`: side by side, one combined plot, and what each patch changed."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from orchestrator.errors import ConfigError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare", help="compare the drains of one or more runs", description=__doc__
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="run ids (or prefixes) or run dirs")
    p.add_argument("--builds", nargs=2, metavar=("BASE", "PATCHED"), help="classify just this pair")
    p.add_argument(
        "--plot", type=Path, help="combined plot (default: compare.png in the first run)"
    )
    p.add_argument("--logx", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def load(spec: str) -> tuple[Path, dict[str, Any]]:
    from orchestrator.export import result
    from orchestrator.runs import RunDir

    path = Path(spec)
    run_dir = path if (path / "result.json").exists() else RunDir.find(spec).path
    try:
        return run_dir, result.load(run_dir / "result.json")
    except (OSError, ValueError) as e:
        raise ConfigError(f"{spec}: no readable result.json: {e}") from None


def run(args: argparse.Namespace) -> int:
    import json

    from rich.console import Console

    from orchestrator.drain.compare import classify, pairs
    from orchestrator.export import plot
    from orchestrator.run.job import summary

    loaded = [load(s) for s in args.runs]
    targets = [t for _, doc in loaded for t in doc["targets"]]
    by_build: dict[str, dict[str, Any]] = {}
    for t in targets:
        if t["trials"] and t["verdict"] != "INFRA-ERROR":
            by_build.setdefault(t["build"], summary(t))
    if args.builds:
        missing = [b for b in args.builds if b not in by_build]
        if missing:
            raise ConfigError(f"--builds: no measured target of build {', '.join(missing)}")
        todo = [tuple(args.builds)]
    else:
        todo = pairs(by_build)
    comparisons = [classify(by_build[b], by_build[p]).__dict__ for b, p in todo]
    out = args.plot or loaded[0][0] / "compare.png"
    plot.plot(targets, out, args.logx, "compare: " + ", ".join(d["run_id"] for _, d in loaded))
    doc = {
        "targets": targets,
        "comparisons": comparisons,
        "tick_ms": loaded[0][1]["tick_ms"],
        "scenario": loaded[0][1]["scenario"],
        "run_id": loaded[0][1]["run_id"],
    }
    if args.json:
        print(json.dumps({"comparisons": comparisons, "plot": str(out)}, indent=1))
    else:
        render(doc, Console(width=None if sys.stdout.isatty() else 140), None, out)
    return 0


def render(
    doc: dict[str, Any], console: Any, run_dir: Path | None, plot: Path | None = None
) -> None:
    """The comparison table, the classifications, and where the artifacts are."""
    from rich.table import Table

    tick_ms = doc["tick_ms"]
    t = Table(
        caption="drain: ticks after the delete returned until no deleted policy is linked; "
        "from issue: the same, counted from the first delete message",
        title=f"{doc['scenario']['delete']} of {doc['scenario']['policies']} in-use "
        f"policies; tick {tick_ms} ms (the kernel's is 1000 ms)",
    )
    cols = (
        "target",
        "build",
        "removed",
        "drain",
        "from issue",
        "at 1 Hz",
        "premature",
        "use after free",
        "walked/lookup",
        "verdict",
    )
    for c in cols:
        t.add_column(c, justify="left" if c in ("target", "build", "verdict") else "right")
    for td in doc["targets"]:
        d = td.get("drain_ticks")
        wpl = td.get("walked_per_lookup")
        synthetic = " (synthetic)" if td["build"].startswith("canary") else ""
        colour = {"PASS": "green", "FAIL": "red"}.get(td["verdict"], "yellow")
        t.add_row(
            td["name"],
            td["build"] + synthetic,
            _s(td.get("removed_by_delete")),
            "never" if d is None else str(d),
            _s(td.get("drain_ticks_from_issue")),
            _duration(td.get("drain_ticks_from_issue")),
            _s(td.get("premature_frees")),
            _s(td.get("use_after_free")),
            "—" if wpl is None else f"{wpl:.0f}",
            f"[{colour}]{td['verdict']}[/]",
        )
    console.print(t)
    for td in doc["targets"]:
        if td["verdict"] != "PASS":
            console.print(f"  {td['name']}: {td['verdict']}: {td['reason']}")
    for c in doc["comparisons"]:
        control = (
            " [dim]— the synthetic positive control[/]"
            if c["patched"].startswith("canary") and not c["base"].startswith("canary")
            else ""
        )
        console.print(
            f"[bold]{c['patched']}[/] vs {c['base']}: [bold]{c['verdict']}[/] "
            f"({c['detail']}){control}"
        )
    if run_dir is not None:
        console.print(
            f"run {doc['run_id']}: {run_dir}/result.json, {run_dir}/junit.xml, {run_dir}/drain.png"
        )
    if plot is not None:
        console.print(f"plot: {plot}")


def _duration(ticks: int | None) -> str:
    """Ticks as the time they take at the kernel's 1 Hz timer."""
    if ticks is None:
        return "never"
    m, s = divmod(ticks, 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


def _s(v: Any) -> str:
    return "—" if v is None else str(v)
