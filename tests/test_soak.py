"""The soak, short: three back-to-back `spdlab run` of the soak lab (2 builds, 200
policies) leave nothing behind and give the same verdicts each time.

The long soak is `python scripts/soak.py --runs 50` (RELIABILITY.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.netns


def test_back_to_back_runs_leak_nothing(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    p = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "soak.py"), "--runs", "3", "--json", str(out)],
        capture_output=True, text=True, cwd=ROOT, timeout=1800,
    )  # fmt: skip
    assert p.returncode == 0, p.stdout + p.stderr
    doc = json.loads(out.read_text())
    assert doc["problem"] is None
    runs = doc["runs"]
    assert len(runs) == 3 and len({r["id"] for r in runs}) == 3
    assert all(r["exit"] == 0 and r["left"] == [] for r in runs), runs
    assert all(r["verdicts"] == runs[0]["verdicts"] for r in runs)
    assert set(runs[0]["verdicts"]) == {"gw-netkey", "gw-netipsec"}
    assert len({r["soak_fds"] for r in runs}) == 1  # the driver's own fds do not grow
