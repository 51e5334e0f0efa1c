"""make bench: run every benchmark and write BENCHMARKS.md.

Each benchmark prints a Markdown section with ratios measured in one run
against its baseline; this stitches them together with the commands used.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"

BENCHES = [
    ("install", ["bench/bench_install.py", "--policies", "10000,100000"]),
    ("traffic", ["bench/bench_traffic.py"]),
    ("scale", ["bench/bench_scale.py", "--policies", "100000", "--held", "2000"]),
    ("pacing", ["bench/bench_pacing.py"]),
    ("up", ["bench/bench_up.py", "--sizes", "1,16,64,256", "--shell-max", "64"]),
    ("scrape", ["bench/bench_scrape.py", "--targets", "64"]),
    ("demo", ["bench/bench_demo.py"]),
    ("kernel", ["bench/bench_kernel.py", "--rounds", "3"]),
    ("kernel-traffic", ["bench/bench_kernel_traffic.py"]),
    ("hosts", ["bench/bench_hosts.py"]),
    ("fuzz", ["bench/bench_fuzz.py"]),
]


def previous(md: Path, script: str) -> str | None:
    """The section of an existing BENCHMARKS.md whose command runs `script`, without
    its Command line: what a rerun of other benchmarks keeps when bench/out has none."""
    if not md.exists():
        return None
    for chunk in md.read_text().split("\n## ")[1:]:
        body, sep, cmd = chunk.rpartition("\nCommand: `python ")
        if sep and cmd.startswith(script):
            return "## " + body.rstrip()
    return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    p.add_argument("--only", nargs="*", help="run these benchmarks only")
    a = p.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.machine())  # fmt: skip
    parts = [
        "# spdlab benchmarks",
        "",
        f"Written by `make bench` on {time.strftime('%Y-%m-%d', time.gmtime())}: "
        f"{cpu}, {os.cpu_count()} cores, "
        f"kernel {platform.release()}. Every figure is a ratio against a baseline measured in "
        "the same run; absolute rates are for reading the ratios, not for comparing machines.",
        "",
    ]  # fmt: skip
    failed = []
    for name, cmd in BENCHES:
        out = OUT / f"{name}.md"
        if a.only and name not in a.only:
            # Keep the last measurement of the benchmarks not rerun.
            kept = out.read_text().rstrip() if out.exists() else previous(a.out, cmd[0])
            if kept is not None:
                parts += [kept, "", f"Command: `python {' '.join(cmd)}`", ""]
            continue
        out.unlink(missing_ok=True)
        print(f"bench: {name}: {' '.join(cmd)}", flush=True)
        r = subprocess.run([sys.executable, *cmd, "--out", str(out)], cwd=ROOT)
        if r.returncode != 0 or not out.exists():
            failed.append(name)
            parts += [f"## {name}", "", f"`{' '.join(cmd)}` failed (exit {r.returncode}).", ""]
            continue
        parts += [out.read_text().rstrip(), "", f"Command: `python {' '.join(cmd)}`", ""]
    tmp = a.out.with_suffix(".tmp")
    tmp.write_text("\n".join(parts))
    tmp.replace(a.out)
    print(f"bench: wrote {a.out}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
