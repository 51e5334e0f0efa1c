"""spdlab matrix: the build matrix run directly against netkeyd, no lab needed."""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import asdict
from pathlib import Path

from orchestrator import buildsconf
from orchestrator.drain.compare import Side, classify, pairs
from orchestrator.drain.direct import DELETE_MODES, DirectResult, run_build
from orchestrator.errors import ConfigError
from orchestrator.lab.builds import known_builds


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "matrix",
        help="run every firmware build through one mass delete of in-use policies",
        description=__doc__,
    )
    p.add_argument("--policies", type=int, default=2000, help="in-use policies per build")
    p.add_argument(
        "--mode",
        action="append",
        choices=DELETE_MODES,
        help="delete mode (repeatable; default: flush and expire)",
    )
    p.add_argument("--builds", nargs="+", help="builds to run (default: all)")
    p.add_argument("--asan", action="store_true", help="run the ASan+UBSan binaries")
    p.add_argument("--json", action="store_true", help="print results as JSON")
    p.set_defaults(func=run)


def side(r: DirectResult) -> Side:
    from orchestrator.result.model import Measures

    m = Measures(removed_by_delete=r.removed_by_delete, drain_ticks=r.drain_ticks,
                 premature_frees=r.premature_frees, use_after_free=r.use_after_free)  # fmt: skip
    return Side(r.build, [list(t) for t in r.series()], m, None, buildsconf.is_synthetic(r.build))


def run(args: argparse.Namespace) -> int:
    if args.policies < 1:
        raise ConfigError(f"--policies: must be at least 1, not {args.policies}")
    builds = args.builds or list(known_builds())
    for b in builds:
        if b not in known_builds():
            raise ConfigError(f"--builds: unknown build '{b}'. Known: {', '.join(known_builds())}")
    modes = args.mode or ["flush", "expire"]
    results: list[DirectResult] = []
    with tempfile.TemporaryDirectory(prefix="spdlab-matrix-") as tmp:
        for mode in modes:
            for b in builds:
                wd = Path(tmp) / f"{b}-{mode}"
                results.append(run_build(b, wd, args.policies, mode, asan=args.asan))
    verdicts = []
    for mode in modes:
        by = {r.build: side(r) for r in results if r.mode == mode}
        for base, patched in pairs(by):
            verdicts.append(classify(by[base], by[patched], mode).model_dump(mode="json"))
    if args.json:
        out = {"results": [asdict(r) | {"ticks": None} for r in results], "verdicts": verdicts}
        print(json.dumps(out, indent=2))
        return 0
    render(results, verdicts, args.policies)
    return 0


def render(results: list[DirectResult], verdicts: list[dict], n: int) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    t = Table(title=f"{n} in-use policies per build, each held by an open flow")
    for col in (
        "build",
        "delete",
        "removed by delete",
        "ticks to drain",
        "premature frees",
        "use after free",
    ):
        t.add_column(col, justify="left" if col in ("build", "delete") else "right")
    for r in results:
        label = r.build + (" (synthetic)" if buildsconf.is_synthetic(r.build) else "")
        t.add_row(
            label,
            r.mode,
            str(r.removed_by_delete),
            "never" if r.drain_ticks is None else str(r.drain_ticks),
            str(r.premature_frees),
            str(r.use_after_free),
        )
    console.print(t)
    for v in verdicts:
        console.print(
            f"[bold]{v['mode']}[/]: {v['patched']} vs {v['base']}: "
            f"[bold]{v['verdict']}[/] ({v['detail']})"
        )
