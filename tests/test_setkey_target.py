"""`spdlab setkey --target NAME [--run RUN]`: a target's PF_KEY socket found from a run.

Real namespaces: a small lab (two netns targets) brought up with `spdlab up`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.runs import RunDir, list_runs

pytestmark = pytest.mark.netns

ROOT = Path(__file__).resolve().parents[1]
SPDLAB = [sys.executable, "-m", "orchestrator.cli.main"]

LAB = """\
name: setkey-target
range: 10.87.0.0/16
defaults: {kind: netns, tick_ms: 50, flow_idle_ticks: 100}
targets:
  - {name: gw, builds: [netkey, canary]}
scenario: {policies: 10}
"""


def namespaces(runs: Path) -> list[str]:
    """Namespaces of the runs under `runs`."""
    shorts = [RunDir(r, runs).short for r in list_runs(runs)]
    ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [n for n in ns.split() if any(n.startswith(f"spdlab-{s}-") for s in shorts)]


def runs_dir() -> Iterator[Path]:
    """A short SPDLAB_RUNS_DIR (Unix socket paths < 108 bytes); every run torn down after."""
    d = Path(tempfile.mkdtemp(prefix="spp-", dir="/tmp"))
    yield d
    spdlab(d, "down", "--all")
    assert namespaces(d) == []
    shutil.rmtree(d, ignore_errors=True)


runs = pytest.fixture(scope="module")(runs_dir)
own_runs = pytest.fixture(runs_dir)  # a test's own: its runs are never "the latest" elsewhere


def spdlab(runs: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SPDLAB_RUNS_DIR": str(runs)}
    cmd = [*SPDLAB, *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, input=stdin, capture_output=True, text=True)


def up(runs: Path, tmp: Path) -> str:
    lab = tmp / "lab.yaml"
    lab.write_text(LAB)
    res = spdlab(runs, "up", str(lab))
    assert res.returncode == 0, res.stderr
    return res.stdout.split()[0]


@pytest.fixture(scope="module")
def run_id(runs: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    return up(runs, tmp_path_factory.mktemp("setkey-target"))


def test_setkey_by_target(runs: Path, run_id: str) -> None:
    stmt = "spdadd 10.1.0.0/24 10.2.0.0/24 any -P out none;\n"
    add = spdlab(runs, "setkey", "--target", "gw-netkey", "-c", stdin=stmt)
    assert add.returncode == 0, add.stderr
    dump = spdlab(runs, "setkey", "--target", "gw-netkey", "--run", run_id[:15], "-DP")
    assert dump.returncode == 0, dump.stderr
    assert "10.1.0.0/24[any] 10.2.0.0/24[any] any" in dump.stdout
    assert "out none" in dump.stdout
    other = spdlab(runs, "setkey", "--target", "gw-canary", "-DP")
    assert other.returncode == 0 and "10.1.0.0/24" not in other.stdout


def test_unknown_target_lists_the_runs_targets(runs: Path, run_id: str) -> None:
    res = spdlab(runs, "setkey", "--target", "gw-nope", "-DP")
    assert res.returncode == 2
    assert res.stderr == (
        f"spdlab: no target 'gw-nope' in run {run_id}: targets are gw-canary, gw-netkey\n"
    )


@pytest.mark.parametrize(
    ("args", "why"),
    [
        (["-s", "/nonexistent", "--target", "gw-netkey", "-DP"], "not allowed with argument"),
        (["--run", "x", "-DP"], "--run goes with --target"),
    ],
)
def test_target_flag_conflicts(runs: Path, args: list[str], why: str) -> None:
    res = spdlab(runs, "setkey", *args)
    assert res.returncode == 2 and why in res.stderr


def test_down(own_runs: Path, tmp_path: Path) -> None:
    run_id = up(own_runs, tmp_path)
    assert namespaces(own_runs)
    res = spdlab(own_runs, "down", run_id)
    assert res.returncode == 0, res.stderr
    assert namespaces(own_runs) == []
