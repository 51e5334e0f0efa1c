"""Soak: N back-to-back `spdlab run` of one small lab, checked after every run.

    python scripts/soak.py [--runs 50] [--lab tests/labs/faults/netns.yaml] [--json FILE]

After each run: nothing left behind (namespaces, links, processes, containers named after
the soak's runs, tests/leftovers.py), the run's verdicts the same as the first run's, and
its peak RSS (wait4) recorded, with the soak's own open fds. Exits 1 at the first leak or
changed verdict; the JSON has one record per run (RELIABILITY.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from leftovers import leftovers  # noqa: E402

from orchestrator import atomic  # noqa: E402
from orchestrator.runs import list_runs  # noqa: E402


def one_run(lab: Path, runs: Path) -> tuple[int, int]:
    """`spdlab run LAB`: its exit status and peak RSS in kB."""
    env = {**os.environ, "SPDLAB_RUNS_DIR": str(runs)}
    with open(runs / "soak.log", "ab") as log:
        p = subprocess.Popen(
            [sys.executable, "-m", "orchestrator.cli.main", "run", str(lab), "--metrics-addr", ""],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    return p.returncode, usage.ru_maxrss


def verdicts(run_dir: Path) -> dict[str, str]:
    res = json.loads((run_dir / "result.json").read_text())
    return {t["name"]: t["verdict"] for t in res["targets"]}


def soak(n: int, lab: Path, runs: Path) -> tuple[list[dict], str | None]:
    """Run n times; the records, and the first problem (None: none)."""
    records: list[dict] = []
    first: dict[str, str] | None = None
    seen: set[str] = set()
    for i in range(1, n + 1):
        code, rss = one_run(lab, runs)
        (rid,) = set(list_runs(runs)) - seen
        seen.add(rid)
        got = verdicts(runs / rid)
        left = leftovers(runs)
        records.append({"run": i, "id": rid, "exit": code, "verdicts": got, "rss_kb": rss,
                        "soak_fds": len(os.listdir("/proc/self/fd")), "left": left})  # fmt: skip
        print(f"run {i}/{n}: exit {code}, {got}, peak RSS {rss} kB, left {len(left)}", flush=True)
        first = first or got
        if left:
            return records, f"run {i} left {left}"
        if got != first:
            return records, f"run {i} verdicts {got}, run 1 {first}"
    return records, None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--lab", type=Path, default=ROOT / "tests" / "labs" / "faults" / "netns.yaml")
    ap.add_argument("--json", type=Path, help="one record per run")
    args = ap.parse_args(argv)
    runs = Path(tempfile.mkdtemp(prefix="ssk-", dir="/tmp"))  # short socket paths
    try:
        records, problem = soak(args.runs, args.lab, runs)
    finally:
        subprocess.run([sys.executable, "-m", "orchestrator.cli.main", "down", "--all"],
                       cwd=ROOT, env={**os.environ, "SPDLAB_RUNS_DIR": str(runs)},
                       capture_output=True)  # fmt: skip
        shutil.rmtree(runs, ignore_errors=True)
    if args.json:
        atomic.write_json(args.json, {"runs": records, "problem": problem}, indent=1)
    rss = [r["rss_kb"] for r in records]
    print(f"{len(records)} runs; peak RSS {min(rss)}..{max(rss)} kB; "
          f"soak fds {records[0]['soak_fds']}..{records[-1]['soak_fds']}; "
          f"{problem or 'nothing left behind, verdicts unchanged'}")  # fmt: skip
    return 1 if problem else 0


if __name__ == "__main__":
    sys.exit(main())
