"""`spdlab validate LAB`: check a lab file; every error as `file:line:col: field: message`.

--preflight also checks the machine as `spdlab run` would before `up` (exit 3 if it is not
ready, one line per unmet precondition), without creating or starting anything.
"""

from __future__ import annotations

import argparse
import json
import sys

from orchestrator.lab import LabError, load_lab


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("validate", help="check a lab file", description=__doc__)
    p.add_argument("lab", metavar="LAB", help="the lab file (YAML)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument(
        "--preflight",
        action="store_true",
        help="also check the machine's preconditions for a run (nothing starts)",
    )
    p.add_argument(
        "--metrics-addr",
        default="127.0.0.1:9464",
        help="with --preflight: the run's metrics address ('' = none)",
    )
    p.add_argument("--pushgateway", metavar="URL", help="with --preflight: the run's Pushgateway")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    try:
        lab = load_lab(args.lab)
    except LabError as e:
        if args.json:
            print(json.dumps({"ok": False, "lab": args.lab, "errors": e.lines}))
        else:
            print(str(e), file=sys.stderr)
        return e.exit_code
    unmet = _preflight(lab, args) if args.preflight else []
    up = _up_run(args.lab) if args.preflight else None
    if args.json:
        out = {"ok": not unmet, "lab": args.lab, "name": lab.name, "builds": list(lab.builds)}
        out["targets"] = [t.model_dump(mode="json") for t in lab.targets]
        if args.preflight:
            out["preflight"] = [{"what": u.what, "fix": u.fix} for u in unmet]
            out["up_run"] = up
        print(json.dumps(out))
    else:
        print(f"{args.lab}: ok: lab '{lab.name}', {len(lab.targets)} targets, "
              f"builds {', '.join(lab.builds)}")  # fmt: skip
        for u in unmet:
            print(f"spdlab: {u.line()}", file=sys.stderr)
        if args.preflight and not unmet:
            print(f"{args.lab}: preflight: ok: kinds {', '.join(lab.kinds)}")
        if up is not None:
            print(f"{args.lab}: preflight: run {up} of this lab is up; a run now is another, "
                  "with its own namespaces and switch")  # fmt: skip
    return 3 if unmet else 0


def _up_run(lab_file: str) -> str | None:
    """The newest run of the lab that is up, if any: a second run does not clash with it
    (each run's names derive from its own id), but the user may not know it is there."""
    from pathlib import Path

    from orchestrator.errors import ConfigError
    from orchestrator.export.runsel import newest_up_run

    try:
        return newest_up_run(Path(lab_file)).name
    except ConfigError:
        return None


def _preflight(lab: object, args: argparse.Namespace) -> list:
    from orchestrator.run.context import Options
    from orchestrator.run.preflight import unmet

    return unmet(lab, Options(metrics_addr=args.metrics_addr, pushgateway=args.pushgateway))  # type: ignore[arg-type]
