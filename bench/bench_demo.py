"""Wall time of `make demo` against its floor, with the Python sender and the native one.

`make demo` after set-up is `spdlab run labs/demo.yaml --trials 5`. Both senders run it
in this one invocation (the lab with `scenario.sender: python`, then `native`). The
floor of each run comes from that run: per trial, the canary's drain (its records × the
tick: ~2000 × 15 ms) plus the settle's two whole keepalive rounds and two ticks, which
every trial must wait for. The ratio is what the orchestration (up, install, reference,
delete, down) and a sender that falls behind add on top.

    python bench/bench_demo.py [--trials 5] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchlib import publish  # noqa: E402

from orchestrator.export import result  # noqa: E402
from orchestrator.run.wallclock import SETTLE_TICKS  # noqa: E402
from orchestrator.runs import list_runs  # noqa: E402

SENDERS = ("python", "native")


def one_run(sender: str, trials: int, tmp: Path) -> dict[str, Any]:
    """`spdlab run` of the demo lab with `sender`; its wall time, floor and sender stats."""
    doc = yaml.safe_load((ROOT / "labs" / "demo.yaml").read_text())
    doc["scenario"]["sender"] = sender
    lab = tmp / f"demo-{sender}.yaml"
    lab.write_text(yaml.safe_dump(doc))
    runs = Path(tempfile.mkdtemp(prefix="spdb-", dir="/tmp"))
    env = {**os.environ, "SPDLAB_RUNS_DIR": str(runs)}
    cmd = [sys.executable, "-m", "orchestrator.cli.main", "run", str(lab), "--json",
           "--metrics-addr", "", "--trials", str(trials)]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    (rid,) = list_runs(runs)
    res = result.load(runs / rid / "result.json")
    shutil.rmtree(runs, ignore_errors=True)  # torn down by the run; its files are read
    tick_s = res.tick_ms / 1000
    canary = next(t for t in res.targets if t.build == "canary")
    settle_s = (2 * res.scenario.keepalive_ticks + SETTLE_TICKS) * tick_s
    drain_s = sum(len(tr.records) for tr in canary.trials) * tick_s
    floor = drain_s + settle_s * len(canary.trials)
    st = res.traffic
    return {
        "sender": sender, "exit": proc.returncode, "wall": wall, "floor": floor,
        "drain_s": drain_s, "trials": len(canary.trials),
        "verdicts": sorted({t.verdict for t in res.targets}),
        "used": sorted({s.get("sender", "python") for s in st}),
        "cpu_s": sum(s["cpu_s"] for s in st),
        "sent": sum(s["sent"] for s in st),
        "rate": min((s["rate_pps"] / s["target_pps"] for s in st if s.get("target_pps")),
                    default=0.0),
        "tick_ms": res.tick_ms, "policies": res.scenario.policies,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=5)
    p.add_argument("--out", metavar="FILE")
    a = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="spdb-lab-"))
    rows = [one_run(s, a.trials, tmp) for s in SENDERS]
    shutil.rmtree(tmp, ignore_errors=True)
    py = rows[0]
    lines = [
        "## The demo run",
        "",
        f"`make demo` after set-up, i.e. `spdlab run labs/demo.yaml --trials {a.trials}`: six "
        f"builds, {py['policies']} in-use policies each, {py['tick_ms']} ms ticks, once per "
        "sender in one invocation. Floor: per trial, the canary's drain (its records × tick) "
        "and the settle's two keepalive rounds and two ticks, from the same run.",
        "",
        "| sender | exit | verdicts | floor s | wall s | wall / floor | sender CPU s "
        "| CPU vs Python | slowest trial's rate / target |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['sender']} (used: {', '.join(r['used'])}) | {r['exit']} "
            f"| {', '.join(r['verdicts'])} | {r['floor']:.1f} | {r['wall']:.1f} "
            f"| {r['wall'] / r['floor']:.2f}× | {r['cpu_s']:.1f} "
            f"| {r['cpu_s'] / py['cpu_s'] if py['cpu_s'] else 0:.2f}× | {r['rate']:.2f} |"
        )
    lines += [
        "",
        f"Goal: wall ≤ 1.1× the floor. Native wall / Python wall: "
        f"{rows[1]['wall'] / py['wall']:.2f}×.",
        "",
    ]
    return publish("\n".join(lines), a.out, rows)


if __name__ == "__main__":
    sys.exit(main())
