"""A Linux af_key board over SSH: Debian's kernel in QEMU (TCG) running dropbear.

spdlab provisions it as any board: the ssh_board role over SSH (no Python on it), the
static pfkey_relay, the PF_KEY check, then PF_KEY through the relay on an SSH channel
with stats by SPDDUMP polling in Linux's flavour, taken from the board's `uname`.
A real kernel unlinks on delete at once (spec §7): `spdlab run` gives drain_ticks 0.
The kernel's SPD outlives a run, so a second `up` refuses what the first left there.

Needs root, qemu-system-x86_64, busybox-static and dropbear-bin (`scripts/deps.sh qemu
ssh`); the kernel comes from scripts/qemu-kernel.sh, the board's initramfs from
tests/qemu_board.sh.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from leftovers import leftovers, short_runs
from sshboard import QemuBoard

from orchestrator.runs import list_runs
from orchestrator.targets import cleanup
from orchestrator.wait import until

pytestmark = [pytest.mark.ssh, pytest.mark.qemu]

ROOT = Path(__file__).resolve().parents[1]
LAB = """\
name: linux-board
range: 10.79.1.0/24
defaults:
  kind: ssh
  tick_ms: 1000
  ssh: {{address: {address}, user: root, key: {key}, known_hosts: {known_hosts}}}
targets:
  - name: linux
    build: kernel
scenario: {{policies: 50, traffic: none, delete: delete, algorithm: aes-cbc-hmac-sha256}}
expect:
  kernel: {{drain_ticks_max: 0}}
"""


@pytest.fixture(scope="module")
def runs():
    yield from short_runs("spdk")


@pytest.fixture(scope="module")
def board():
    d = Path(tempfile.mkdtemp(prefix="spdkb", dir="/tmp"))
    b = QemuBoard(d)
    try:
        yield b.start()
    finally:
        b.stop()
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def lab_file(runs, board):
    p = runs / "linux-board.yaml"
    p.write_text(LAB.format(address=board.address, key=board.key, known_hosts=board.known_hosts))
    return p


def spdlab(runs: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "SPDLAB_RUNS_DIR": str(runs)}
    cmd = [sys.executable, "-m", "orchestrator.cli.main", *args]
    return subprocess.run(
        cmd, input=stdin, capture_output=True, text=True, env=env, cwd=ROOT, timeout=900
    )


def relays_on_board(board: QemuBoard) -> list[str]:
    """The guest's processes are not ours to see; ask it over a fresh SSH session."""
    argv = ["ssh", "-i", str(board.key), "-o", f"UserKnownHostsFile={board.known_hosts}",
            "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", f"root@{board.address}",
            "ps -o pid,args; ls -d /tmp/spdlab-* 2>/dev/null || true"]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=True).stdout
    return [line for line in out.splitlines() if "spdlab-" in line and "ps -o" not in line]


def assert_down(runs: Path, rid: str, board: QemuBoard) -> None:
    state = json.loads((runs / rid / "state.json").read_text())
    assert state["phase"] == "down"
    assert not any(cleanup.still_there(r) for r in state["resources"])
    until(lambda: not relays_on_board(board), "nothing of spdlab on the board", 60)
    assert leftovers(runs) == []


def test_spdlab_run_on_a_real_kernel_board_passes_at_drain_ticks_0(runs, board, lab_file):
    known = set(list_runs(runs))
    r = spdlab(runs, "run", str(lab_file), "--metrics-addr", "")
    [rid] = set(list_runs(runs)) - known
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    doc = json.loads((runs / rid / "result.json").read_text())
    [t] = doc["targets"]
    assert (t["kind"], t["build"], t["verdict"]) == ("ssh", "kernel", "PASS")
    assert t["measures"]["drain_ticks"] == 0 and t["measures"]["removed_by_delete"] == 50
    version = json.loads((runs / rid / "targets/linux/linux/version.json").read_text())
    assert version["kernel"].startswith("6.1.0-") and version["resolution"] == "spddump-poll"
    board_json = json.loads((runs / rid / "targets/linux/linux/board.json").read_text())
    assert (board_json["os"], board_json["relay"]) == ("Linux", "prebuilt")
    assert_down(runs, rid, board)


def test_up_setkey_down_then_up_refuses_the_spd_left_behind(runs, board, lab_file):
    known = set(list_runs(runs))
    r = spdlab(runs, "up", str(lab_file))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    [rid] = set(list_runs(runs)) - known
    try:
        st = json.loads(spdlab(runs, "status", rid, "--json").stdout)
        [t] = st["targets"]
        assert (t["kind"], t["build"], t["healthy"], t["policies"]) == ("ssh", "kernel", True, 0)
        state = json.loads((runs / rid / "state.json").read_text())
        assert state["targets"]["linux"]["flavour"] == "linux"  # from the board's uname
        add = "spdadd 10.1.0.1 10.2.0.1 any -P out ipsec esp/transport//require;\n"
        r = spdlab(runs, "setkey", "--target", "linux", "--run", rid, "-c", stdin=add)
        assert r.returncode == 0, r.stderr
        r = spdlab(runs, "setkey", "--target", "linux", "--run", rid, "-DP")
        assert "10.1.0.1" in r.stdout and "refcnt=" in r.stdout, r.stdout + r.stderr
    finally:
        assert spdlab(runs, "down", rid).returncode == 0
    assert_down(runs, rid, board)
    known = set(list_runs(runs))
    r = spdlab(runs, "up", str(lab_file))
    [again] = set(list_runs(runs)) - known
    assert r.returncode == 3, r.stdout[-2000:] + r.stderr[-2000:]
    assert "the board's SPD holds 1 policies before the run" in " ".join(r.stderr.split())
    assert spdlab(runs, "down", again).returncode == 0
    assert_down(runs, again, board)
