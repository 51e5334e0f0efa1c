"""Wall time of the demo run, against the slowest drain it has to wait for.

`spdlab run labs/demo.yaml` once; its baseline, from the same run, is the
canary's drain alone: ticks from its delete to the end × the tick length.
The ratio is what the orchestration (up, install, reference, delete, down)
adds on top of waiting for the synthetic control.

    python bench/bench_demo.py [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchlib import publish  # noqa: E402

from orchestrator.export import result  # noqa: E402
from orchestrator.runs import list_runs  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", metavar="FILE")
    a = p.parse_args(argv)
    runs = Path(tempfile.mkdtemp(prefix="spdb-", dir="/tmp"))
    env = {**os.environ, "SPDLAB_RUNS_DIR": str(runs)}
    cmd = [sys.executable, "-m", "orchestrator.cli.main", "run", "labs/demo.yaml", "--json"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        print(proc.stdout + proc.stderr, file=sys.stderr)
        return 1
    (rid,) = list_runs(runs)
    res = result.load(runs / rid / "result.json")
    canary = next(t for t in res.targets if t.build == "canary").trials[0]
    tick_s = res.tick_ms / 1000
    drain_s = len(canary.records) * tick_s
    text = "\n".join([
        "## The demo run",
        "",
        "`make demo` after set-up, i.e. `spdlab run labs/demo.yaml`: six builds, "
        f"{res.scenario.policies} in-use policies each, {res.tick_ms} ms ticks.",
        "",
        "| | seconds | ratio |",
        "|---|---:|---:|",
        f"| canary drain alone (baseline: its records × tick) | {drain_s:.1f} | 1.00× |",
        f"| whole run, wall clock | {wall:.1f} | {wall / drain_s:.2f}× |",
        "",
        f"Goal: < 60 s wall. The canary's 2000-tick drain is {drain_s:.0f} s of it at "
        f"{res.tick_ms} ms ticks (33 min at the kernel's 1 Hz).",
        "",
    ])  # fmt: skip
    return publish(text, a.out)


if __name__ == "__main__":
    sys.exit(main())
