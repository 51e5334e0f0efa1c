"""`spdlab compare RUN…`: side by side, one combined plot, and what each patch changed."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from orchestrator.errors import ConfigError
from orchestrator.result.describe import baseline_changed, baseline_shown, stats_line


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare", help="compare the drains of one or more runs", description=__doc__
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="run ids (or prefixes) or run dirs")
    p.add_argument("--builds", nargs=2, metavar=("BASE", "PATCHED"), help="classify just this pair")
    p.add_argument(
        "--plot", type=Path, help="combined plot (default: compare.png in the first run)"
    )
    p.add_argument("--linear", action="store_true",
                   help="a linear tick axis in the plot (default: symlog)")  # fmt: skip
    p.add_argument("--json", action="store_true")
    p.add_argument("--baseline", metavar="RUN",
                   help="also compare every build and hardware label with this run's; "
                   f"exit {EXIT_CHANGED} when any changed")  # fmt: skip
    p.set_defaults(func=run)


EXIT_CHANGED = 4


def load(spec: str) -> tuple[Path, Any]:
    """A run's folder and its RunResult."""
    from orchestrator.export import result
    from orchestrator.runs import RunDir

    path = Path(spec)
    run_dir = path if (path / "result.json").exists() else RunDir.find(spec).path
    return run_dir, result.load(run_dir / "result.json")


def load_baseline(spec: str) -> Any:
    """The RunResult `--baseline` names; a run not there is one line naming the flag."""
    try:
        return load(spec)[1]
    except ConfigError as e:
        raise ConfigError(f"--baseline: {e}") from None


def run(args: argparse.Namespace) -> int:
    import json

    from rich.console import Console

    from orchestrator.drain import compare, stats
    from orchestrator.export import plot

    loaded = [load(s) for s in args.runs]
    base = load_baseline(args.baseline) if args.baseline else None
    first = loaded[0][1]
    targets = [t for _, res in loaded for t in res.targets]
    if args.builds:
        sides = compare.measured_by_build(targets)
        missing = [b for b in args.builds if b not in sides]
        if missing:
            raise ConfigError(f"--builds: no measured target of build {', '.join(missing)}")
        comparisons = [compare.classify(sides[args.builds[0]], sides[args.builds[1]])]
    else:
        from orchestrator.result.versions import recipes

        known = {b: r for _, res in loaded for b, r in recipes(res.versions).items()}
        tol = stats.tolerances(first.scenario)
        comparisons = compare.comparisons(targets, recipes=known, tolerance=tol)
    out = args.plot or loaded[0][0] / "compare.png"
    plot.plot(targets, out, "compare: " + ", ".join(r.run_id for _, r in loaded), args.linear)
    from orchestrator.run.judge import baseline

    merged = first.model_copy(update={"targets": targets, "comparisons": comparisons})
    against = baseline(merged, base) if base is not None else None
    code = EXIT_CHANGED if against is not None and against.changed else 0
    if args.json:
        doc = {"comparisons": [c.model_dump(mode="json") for c in comparisons], "plot": str(out)}
        if against is not None:
            doc["baseline"] = against.model_dump(mode="json")
        print(json.dumps(doc, indent=1))
        return code
    merged.baseline = against
    render(merged, Console(width=None if sys.stdout.isatty() else 140), None, out)
    return code


COLUMNS = ("target", "build", "removed", "timer during", "drain", "from issue", "at 1 Hz",
           "free", "premature", "use after free", "walked/lookup", "verdict")  # fmt: skip
CAPTION = (
    "removed: unlinked by the delete's own messages; timer during: by the timer while "
    "they were sent; drain: ticks after the delete returned until no deleted policy is "
    "linked; from issue: the same, from its first message; free: until none is allocated"
)


def render(res: Any, console: Any, run_dir: Path | None, plot: Path | None = None) -> None:
    """The comparison table, its footnotes, the classifications, where the artifacts are."""
    from rich.table import Table

    from orchestrator.result.measure import Footnotes

    notes = Footnotes()
    t = Table(caption=CAPTION, title=_title(res))
    for c in COLUMNS:
        # Never cut a name or a verdict: "linux-cana…" could be linux-canary or its fix.
        words = c in ("target", "build", "verdict")
        t.add_column(c, justify="left" if words else "right", no_wrap=words)
    for td in res.targets:
        t.add_row(*_row(td, notes))
    console.print(t)
    for line in notes.lines() + _ticks(res):
        console.print(f"  {line}")
    _verdicts(res, console)
    _artifacts(res, console, run_dir, plot)


def _title(res: Any) -> str:
    from orchestrator.result.describe import clock, title

    return f"{title(res.scenario)}; {clock(res.scenario, res.tick_ms)}"


def _ticks(res: Any) -> list[str]:
    """What a tick is, for each kind in the table."""
    kinds = {t.kind: t.tick_meaning for t in res.targets}
    return [f"tick on {k}: {m}" for k, m in sorted(kinds.items())]


def _row(td: Any, notes: Any) -> list[str]:
    from orchestrator.result.describe import ticks_at_1hz

    m = td.measures
    colour = {"PASS": "green", "FAIL": "red"}.get(td.verdict, "yellow")
    cells = [notes.cell(getattr(m, k)) for k in ("removed_by_delete",
             "timer_unlinked_during_delete", "drain_ticks", "drain_ticks_from_issue")]  # fmt: skip
    at_1hz = ticks_at_1hz(m.drain_ticks_from_issue)
    rest = [notes.cell(getattr(m, k)) for k in ("free_ticks", "premature_frees", "use_after_free")]
    rest.append(notes.cell(m.walked_per_lookup, "—", "{:.0f}"))
    build = td.build + (" (synthetic)" if td.synthetic else "")
    return [td.name, build, *cells, at_1hz, *rest, f"[{colour}]{td.verdict}[/]"]


def _verdicts(res: Any, console: Any) -> None:
    for td in res.targets:
        if td.verdict != "PASS":
            console.print(f"  {td.name}: {td.verdict}: {td.reason}")
    methods = []
    for c in res.comparisons:
        _line(console, comparison_line(c))
        _line(console, f"    [dim]{stats_line(c)}[/]")
        methods += [c.method] if c.method not in methods else []
    if res.baseline is not None:
        _baseline(res.baseline, console)
    for m in methods:
        console.print(f"  [dim]method: {m}[/]")
    tol = {t.measure: t.tolerance for c in res.comparisons for t in c.tests}
    if tol:
        console.print(f"  [dim]no effect within: {_tolerances(tol)}[/]")


def _line(console: Any, text: str) -> None:
    """A classification is one line however wide: CI logs are grepped for it."""
    console.print(text, soft_wrap=True)


def comparison_line(c: Any) -> str:
    """One classification: what was compared, the verdict and what differs."""
    control = " [dim]— the synthetic positive control[/]" if c.control else ""
    mode = f"{c.mode}: " if c.mode else ""
    if c.across == "hardware":
        verdict = {"no effect": "same drain", "undecided": "undecided"}.get(c.verdict, "differs")
        secs = " | ".join(f"{h} {_secs(v)}" for h, v in c.timing.items())
        return (f"{mode}[bold]{c.base}[/] on {c.base_hardware} vs {c.patched_hardware}: "
                f"[bold]{verdict}[/] ({c.detail}; drain at its tick: {secs})")  # fmt: skip
    where = f" on {c.hardware}" if c.hardware and c.across == "patch" else ""
    if c.across == "baseline":
        return f"  [bold]{c.patched}[/]{_at(c.hardware)}: [bold]{c.verdict}[/] ({c.detail})"
    return (
        f"{mode}[bold]{c.patched}[/] vs {c.base}{where}: [bold]{c.verdict}[/] ({c.detail}){control}"
    )


def _at(hw: str | None) -> str:
    return f" on {hw}" if hw else ""


def _secs(v: float | None) -> str:
    return "never" if v is None else f"{v:g} s"


def _tolerances(tol: dict[str, float]) -> str:
    return ", ".join(f"{k.replace('_', ' ')} ±{v:g}" for k, v in tol.items())


def _baseline(b: Any, console: Any) -> None:
    console.print(f"[bold]changed from baseline {b.run_id}:[/] {baseline_changed(b)}")
    for c in baseline_shown(b):
        _line(console, comparison_line(c))
        _line(console, f"    [dim]{stats_line(c)}[/]")
    if b.undecided:
        console.print(f"  undecided against the baseline: {', '.join(b.undecided)}")
    if b.missing:
        console.print(f"  not in the baseline: {', '.join(b.missing)}")


def _artifacts(res: Any, console: Any, run_dir: Path | None, plot: Path | None) -> None:
    if run_dir is not None:
        console.print(
            f"run {res.run_id}: {run_dir}/result.json, {run_dir}/junit.xml, {run_dir}/drain.png"
        )
    if plot is not None:
        console.print(f"plot: {plot}")
