"""`spdlab validate LAB`: check a lab file; every error as `file:line:col: field: message`."""

from __future__ import annotations

import argparse
import json
import sys

from orchestrator.lab import LabError, load_lab


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("validate", help="check a lab file", description=__doc__)
    p.add_argument("lab", metavar="LAB", help="the lab file (YAML)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
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
    if args.json:
        out = {"ok": True, "lab": args.lab, "name": lab.name, "builds": list(lab.builds)}
        out["targets"] = [t.model_dump(mode="json") for t in lab.targets]
        print(json.dumps(out))
    else:
        print(f"{args.lab}: ok: lab '{lab.name}', {len(lab.targets)} targets, "
              f"builds {', '.join(lab.builds)}")  # fmt: skip
    return 0
