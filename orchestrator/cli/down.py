"""`spdlab down [RUN]`: remove everything a run recorded; `--all` for every run. Idempotent."""

from __future__ import annotations

import argparse
import json
import sys

from orchestrator.errors import ConfigError


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("down", help="tear a run down", description=__doc__)
    p.add_argument("run", metavar="RUN", nargs="?", help="run id or prefix (default: latest)")
    p.add_argument("--all", action="store_true", help="tear down every recorded run")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from orchestrator.targets.session import LabRun
    from orchestrator.teardown import down, down_all, is_down, require_record

    if args.all and args.run:
        raise ConfigError("give RUN or --all, not both")
    if args.all:
        problems = down_all()
    else:
        lr = LabRun.open(args.run)
        if is_down(lr.state):  # what was recorded says so: nothing is probed
            return _already(lr, args.json)
        require_record(lr.run.path.parent)
        problems = {lr.run_id: down(lr)}
    if args.json:
        print(json.dumps({"runs": {r: {"problems": p} for r, p in problems.items()}}))
    elif not problems:
        print("no run to take down: every recorded run is down")
    else:
        for rid, probs in problems.items():
            print(f"{rid}: down" + (f", {len(probs)} left over" if probs else ""))
            for p in probs:
                print(f"  {p}", file=sys.stderr)
    return 3 if any(problems.values()) else 0


def _already(lr: object, as_json: bool) -> int:
    st = lr.state  # type: ignore[attr-defined]
    if as_json:
        print(json.dumps({"runs": {lr.run_id: {"problems": [], "already": True}}}))  # type: ignore[attr-defined]
    else:
        print(f"{lr.run_id}: already down since {st.since}")  # type: ignore[attr-defined]
    return 0
