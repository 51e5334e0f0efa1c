"""What a run left behind: its namespaces and the processes that mention its folder."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from orchestrator.runs import RunDir, list_runs


def leftovers(runs: Path) -> list[str]:
    """Namespaces and processes any run under `runs` left behind."""
    shorts = [RunDir(r, runs).short for r in list_runs(runs)]
    ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    left = [n for n in ns.split() if any(n.startswith(f"spdlab-{s}-") for s in shorts)]
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(runs) in cmd and "pytest" not in cmd:
            left.append(cmd)
    return left
