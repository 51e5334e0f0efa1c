"""`spdlab matrix`: every firmware build through one mass delete of in-use policies, no lab.

The same engine as `spdlab run`, on a lab made in memory: one netns gateway per build.
"""

from __future__ import annotations

import argparse
import json
import sys

from orchestrator.delete import MODES
from orchestrator.errors import ConfigError
from orchestrator.lab.builds import known_builds


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "matrix",
        help="run every firmware build through one mass delete of in-use policies",
        description=__doc__,
    )
    p.add_argument("--policies", type=int, default=2000, help="in-use policies per build")
    p.add_argument("--mode", action="append", choices=MODES,
                   help="delete mode (repeatable; default: flush and expire)")  # fmt: skip
    p.add_argument("--builds", nargs="+", help="builds to run (default: all)")
    p.add_argument("--range", default="10.79.0.0/16", help="the matrix lab's address range")
    p.add_argument("--tick-ms", type=int, default=15, help="netkeyd's tick length")
    p.add_argument("--json", action="store_true", help="print results as JSON")
    p.set_defaults(func=run)


def _check(args: argparse.Namespace) -> list[str]:
    if args.policies < 1:
        raise ConfigError(f"--policies: must be at least 1, not {args.policies}")
    builds = args.builds or list(known_builds())
    for b in builds:
        if b not in known_builds():
            raise ConfigError(f"--builds: unknown build '{b}'. Known: {', '.join(known_builds())}")
    return builds


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from orchestrator.cli.bars import bars
    from orchestrator.cli.run import exit_code
    from orchestrator.interrupts import interrupts
    from orchestrator.progress import RichProgress
    from orchestrator.run import matrix

    builds = _check(args)
    modes = args.mode or ["flush", "expire"]
    console = Console(stderr=True)
    with interrupts(), bars(console, disable=args.json) as p:
        results = matrix.run(builds, args.policies, modes, RichProgress(p),
                             tick_ms=args.tick_ms, range_=args.range)  # fmt: skip
    if args.json:
        print(json.dumps({"runs": [_brief(r) for r in results]}, indent=1))
        return exit_code(*results)
    from orchestrator.cli.compare import render

    out = Console(width=None if sys.stdout.isatty() else 140)
    for r in results:
        render(r, out, None)
    return exit_code(*results)  # as `spdlab run`'s: 0 only when every target passed


def _brief(r: object) -> dict:
    doc = r.model_dump(mode="json", include={"run_id", "complete", "comparisons"})  # type: ignore[attr-defined]
    doc["mode"] = r.scenario.delete  # type: ignore[attr-defined]
    doc["targets"] = [t.model_dump(mode="json", include={"name", "build", "verdict", "measures"})
                      for t in r.targets]  # type: ignore[attr-defined]  # fmt: skip
    return doc
