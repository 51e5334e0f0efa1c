"""Fuzz harness benchmark: each libFuzzer harness of this tree against the same harness of a
baseline revision, on the same seeds, for the same number of executions.

The baseline is the tree before the admin and relay harnesses ran in process (a socketpair
send/recv per admin read, a Unix socket connection per relay OPEN, 1,024 ticks per admin
input) and before the ESP harness kept unchanged SAs between inputs. Both are built with
`make -C firmware fuzz` (ASan+UBSan) and start from a copy of this tree's committed corpus,
with `-use_value_profile=1 -seed=1`. The machine is shared, so the executions are split into
--rounds that alternate baseline and current, each round going on from the corpus the last
left; a change in load then falls on both alike. exec/s is executions over the rounds' wall
time (start-up included); the ratio is current / baseline. `pfkey`, the same code in both,
shows what the ratio of two equal harnesses is on this machine at this load. cov and ft are
libFuzzer's after the same executions, so a speed-up that loses coverage shows there. Both
count each harness's own code too, which differs, and ft counts how often each loop ran in
buckets, so fewer ticks and channels per input give fewer of those.

    python bench/bench_fuzz.py [--baseline REV] [--runs N] [--rounds R] [--harnesses pfkey,...]
                               [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

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


def run(binary: Path, work: Path, runs: int) -> tuple[int, int, int, float]:
    """One libFuzzer run of `runs` executions on the corpus in `work`: executions, cov, ft,
    wall seconds."""
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
    return int(done[1]), int(done[2]), int(done[3]), wall


def pair(bins: dict[str, Path], h: str, runs: int, rounds: int, tmp: Path) -> dict[str, Any]:
    """Baseline and current of harness `h`, `runs` executions each in alternating rounds."""
    res: dict[str, Any] = {}
    for k in bins:
        shutil.rmtree(tmp / k, ignore_errors=True)
        shutil.copytree(FW / "fuzz" / "corpus" / h, tmp / k)
        res[k] = {"execs": 0, "wall_s": 0.0, "loads": []}
    for _ in range(rounds):
        for k, d in bins.items():
            n, cov, ft, wall = run(d / f"fuzz_{h}", tmp / k, runs // rounds)
            r = res[k]
            r["execs"] += n
            r["wall_s"] += wall
            r["cov"], r["ft"] = cov, ft
            r["loads"].append(os.getloadavg()[0])
    for r in res.values():
        r["exec_s"] = int(r["execs"] / r["wall_s"])
    return res


def cpu() -> str:
    for ln in Path("/proc/cpuinfo").read_text().splitlines():
        if ln.startswith("model name"):
            return ln.split(":", 1)[1].strip()
    return platform.machine()


def section(res: dict[str, dict[str, Any]], rev: str, runs: int, rounds: int) -> str:
    loads = [x for r in res.values() for k in r.values() for x in k["loads"]]
    rows = [
        "## fuzz",
        "",
        f"Each harness (ASan+UBSan, `-use_value_profile=1 -seed=1`) against the same harness at "
        f"`{rev}`, {runs:,} executions each from a copy of the committed corpus, in {rounds} "
        f"rounds alternating baseline and current, one run at a time, on {cpu()}, kernel "
        f"{platform.release()}. Load average (1 min) after the runs: {min(loads):.1f} to "
        f"{max(loads):.1f} on {os.cpu_count()} cores. "
        "cov / ft after the same executions; the time to 3×10^7 executions at the measured "
        "rate. `pfkey` is the same code in both: its ratio is this run's noise.",
        "",
        "| harness | baseline exec/s | current exec/s | ratio | baseline cov / ft | "
        "current cov / ft | 3×10^7 at current rate |",
        "|---|---:|---:|---:|---|---|---:|",
    ]
    for h, r in res.items():
        b, c = r["baseline"], r["current"]
        rows.append(
            f"| `{h}` | {b['exec_s']:,} | {c['exec_s']:,} | {c['exec_s'] / b['exec_s']:.2f}× "
            f"| {b['cov']} / {b['ft']} | {c['cov']} / {c['ft']} "
            f"| {CAMPAIGN_RUNS / c['exec_s'] / 60:.0f} min |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--baseline", default=BASELINE, help="git revision of the baseline")
    p.add_argument("--runs", type=int, default=500_000, help="executions per run")
    p.add_argument("--rounds", type=int, default=4, help="alternations per harness")
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
        res = {}
        for h in harnesses:
            res[h] = pair(bins, h, a.runs, a.rounds, tmp)
            print(f"bench_fuzz: {h}: {res[h]}", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return publish(section(res, a.baseline, a.runs, a.rounds), a.out, res, a.json)


if __name__ == "__main__":
    sys.exit(main())
