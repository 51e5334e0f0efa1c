"""Fuzz harness benchmark: each libFuzzer harness of this tree against the same harness of a
baseline revision, on the same seeds, for the same number of executions.

The baseline is the tree before the admin and relay harnesses ran in process (a socketpair
send/recv per admin read, a Unix socket connection per relay OPEN, 1,024 ticks per admin
input) and before the ESP harness kept unchanged SAs between inputs. Both are built with
`make -C firmware fuzz` (ASan+UBSan); each pair runs one after the other from a copy of this
tree's committed corpus with `-use_value_profile=1 -seed=1`. exec/s is executions over the
run's wall time (start-up included); the ratio is current / baseline. cov and ft are
libFuzzer's after the same executions, so a speed-up that loses coverage shows there. Both
count each harness's own code too, which differs, and ft counts how often each loop ran in
buckets, so fewer ticks and channels per input give fewer of those.

    python bench/bench_fuzz.py [--baseline REV] [--runs N] [--harnesses pfkey,esp,...] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import publish

ROOT = Path(__file__).resolve().parents[1]
FW = ROOT / "firmware"
BASELINE = "90f1e41"  # the socket-driven admin and relay harnesses
HARNESSES = ("pfkey", "esp", "admin", "relay")
CAMPAIGN_RUNS = 30_000_000
DONE = re.compile(r"^#(\d+)\s+DONE\s+cov: (\d+) ft: (\d+)", re.M)


def build(fw: Path) -> Path:
    """The harnesses of the firmware tree `fw`, built; their folder."""
    subprocess.run(["make", "-s", "-C", str(fw), "fuzz"], check=True, stdout=subprocess.DEVNULL)
    return fw / "build" / "fuzz"


def baseline_tree(rev: str, into: Path) -> Path:
    """firmware/ as it was at `rev`, unpacked under `into`."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "firmware"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "firmware"


def run(binary: Path, seeds: Path, runs: int, work: Path) -> dict[str, float]:
    """One libFuzzer run of `runs` executions from a fresh copy of `seeds`."""
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(seeds, work)
    t0 = time.monotonic()
    p = subprocess.run(
        [str(binary), f"-runs={runs}", "-seed=1", "-use_value_profile=1",
         "-print_final_stats=1", str(work)],
        capture_output=True, text=True,
    )  # fmt: skip
    wall = time.monotonic() - t0
    done = DONE.search(p.stderr)
    if p.returncode != 0 or done is None:
        sys.exit(f"bench_fuzz: {binary} failed (exit {p.returncode}): {p.stderr[-2000:]}")
    return {
        "execs": int(done[1]), "cov": int(done[2]), "ft": int(done[3]),
        "exec_s": int(int(done[1]) / wall), "wall_s": wall, "load": os.getloadavg()[0],
    }  # fmt: skip


def section(res: dict[str, dict[str, dict[str, float]]], rev: str, runs: int) -> str:
    rows = [
        "## fuzz",
        "",
        f"Each harness (ASan+UBSan, `-use_value_profile=1 -seed=1`) against the same harness at "
        f"`{rev}`, {runs:,} executions each from a copy of the committed corpus, baseline "
        "then current, one at a time. Load average (1 min) after each run in brackets; "
        "cov / ft after the same executions; the time to 3×10^7 executions at the measured "
        "rate.",
        "",
        "| harness | baseline exec/s | current exec/s | ratio | baseline cov / ft | "
        "current cov / ft | 3×10^7 at current rate |",
        "|---|---:|---:|---:|---|---|---:|",
    ]
    for h, r in res.items():
        b, c = r["baseline"], r["current"]
        rows.append(
            f"| `{h}` | {b['exec_s']:,} ({b['load']:.1f}) | {c['exec_s']:,} ({c['load']:.1f}) "
            f"| {c['exec_s'] / b['exec_s']:.2f}× | {b['cov']} / {b['ft']} | "
            f"{c['cov']} / {c['ft']} | {CAMPAIGN_RUNS / c['exec_s'] / 60:.0f} min |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--baseline", default=BASELINE, help="git revision of the baseline")
    p.add_argument("--runs", type=int, default=500_000, help="executions per run")
    p.add_argument("--harnesses", default=",".join(HARNESSES))
    p.add_argument("--out", metavar="FILE", help="write the Markdown section here")
    p.add_argument("--json", metavar="FILE", help="write the numbers here")
    a = p.parse_args(argv)
    harnesses = a.harnesses.split(",")
    if unknown := set(harnesses) - set(HARNESSES):
        p.error(f"--harnesses: unknown {', '.join(sorted(unknown))}")
    tmp = Path(tempfile.mkdtemp(prefix="spdfz", dir="/tmp"))
    try:
        bins = {"baseline": build(baseline_tree(a.baseline, tmp)), "current": build(FW)}
        res: dict[str, dict[str, dict[str, float]]] = {}
        for h in harnesses:
            seeds = FW / "fuzz" / "corpus" / h
            res[h] = {k: run(d / f"fuzz_{h}", seeds, a.runs, tmp / "work") for k, d in bins.items()}
            print(f"bench_fuzz: {h}: {res[h]}", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return publish(section(res, a.baseline, a.runs), a.out, res, a.json)


if __name__ == "__main__":
    sys.exit(main())
