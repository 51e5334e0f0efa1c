"""ssh targets for real: a board that is a network namespace running Debian's OpenSSH sshd.

spdlab provisions it with the ssh_board role over SSH, runs netkeyd there and reaches it
only through the SSH connection: PF_KEY through pfkey_relay on the channel's stdio, the
admin socket through an OpenSSH Unix-socket forward. `up`, `status`, `setkey`, `run`
and `down` through the CLI; `down` after kill -9 of spdlab. The board's kernel is this
host's, which has no PF_KEY: a `kernel` build on it fails provisioning with the reason.
Afterwards nothing of spdlab runs, here or on the board, and the board's folder is gone.

Needs root, openssh-server and openssh-client (`scripts/deps.sh ssh`).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from leftovers import leftovers, short_runs
from sshboard import Board, keygen

from orchestrator.runs import list_runs
from orchestrator.targets import cleanup
from orchestrator.targets.session import LabRun
from orchestrator.wait import until

pytestmark = [pytest.mark.ssh, pytest.mark.netns]

ROOT = Path(__file__).resolve().parents[1]

LAB = """\
name: board
range: 10.79.0.0/24
defaults:
  kind: ssh
  tick_ms: 100
  ssh: {{address: {address}, user: root, key: {key}, known_hosts: {known_hosts}{extra}}}
targets:
  - name: {name}
    build: {build}
scenario: {{policies: 50, traffic: none, delete: delete}}
expect:
  netkey: {{drain_ticks_max: 1, premature_frees: 0}}
"""


@pytest.fixture(scope="module")
def runs():
    yield from short_runs("spds")


@pytest.fixture(scope="module")
def board():
    """The board's keys and sshd's files, apart from the runs it serves."""
    d = Path(tempfile.mkdtemp(prefix="spdb", dir="/tmp"))
    b = Board(d).start()
    yield b
    b.stop()
    shutil.rmtree(d, ignore_errors=True)


def lab(runs: Path, board: Board, build: str = "netkey", name: str = "nk", **kw: str) -> Path:
    fields = {"address": board.address, "key": board.key, "known_hosts": board.known_hosts,
              "extra": ""}  # fmt: skip
    p = runs / f"{name}.yaml"
    p.write_text(LAB.format(name=name, build=build, **{**fields, **kw}))
    return p


def spdlab(runs: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "SPDLAB_RUNS_DIR": str(runs)}
    cmd = [sys.executable, "-m", "orchestrator.cli.main", *args]
    return subprocess.run(
        cmd, input=stdin, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600
    )


def new_run(runs: Path, known: set[str]) -> str:
    [rid] = set(list_runs(runs)) - known
    return rid


def spdlab_on_board(board: Board) -> list[str]:
    """What spdlab left running on the board: anything but sshd's listener."""
    return [c for c in board.ps() if "spdlab-" in c]


def assert_down(runs: Path, rid: str, board: Board) -> None:
    state = json.loads((runs / rid / "state.json").read_text())
    assert state["phase"] == "down"
    assert not any(cleanup.still_there(r) for r in state["resources"])
    until(lambda: not spdlab_on_board(board), "nothing of spdlab on the board", 30)
    for t in state["targets"].values():
        assert not Path(t["board_dir"]).exists()  # the board shares this filesystem
    assert leftovers(runs) == []


# ------------------------------------------------------------------ tests


def test_up_status_setkey_down(runs, board):
    """With the relay built on the board from its source, by the board's cc."""
    known = set(list_runs(runs))
    r = spdlab(runs, "up", str(lab(runs, board, extra=", relay: build")))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    rid = new_run(runs, known)
    try:
        st = spdlab(runs, "status", rid, "--json")
        assert st.returncode == 0, st.stdout + st.stderr
        [t] = json.loads(st.stdout)["targets"]
        assert (t["kind"], t["build"], t["healthy"], t["policies"]) == ("ssh", "netkey", True, 0)
        on_board = spdlab_on_board(board)
        assert any("/netkeyd --control" in c for c in on_board), on_board
        assert any("/pfkey_relay -u" in c for c in on_board), on_board
        add = "spdadd 10.1.0.1 10.2.0.1 any -P out ipsec esp/transport//require;\n"
        r = spdlab(runs, "setkey", "--target", "nk", "--run", rid, "-c", stdin=add)
        assert r.returncode == 0, r.stderr
        r = spdlab(runs, "setkey", "--target", "nk", "--run", rid, "-DP")
        assert r.returncode == 0 and "10.1.0.1" in r.stdout, r.stdout + r.stderr
        lr = LabRun.open(rid, base=runs)
        stats = lr.stats_endpoint("nk")
        assert stats.request("version")["build"] == "netkey"  # netkeyd on the board answers
        ticks = stats.request("ticks 0")
        assert ticks["ticks"] and "resolution" not in ticks["ticks"][-1]  # its own tick ring
        assert stats.request("stats")["spd"]["alive"]["out"] == 1
        rec = lr.state.targets["nk"]
        assert (rec["board"]["os"], rec["board"]["relay"], rec["flavour"]) == (
            "Linux", "built on the board", "bsd",
        )  # fmt: skip
    finally:
        down = spdlab(runs, "down", rid)
    assert down.returncode == 0, down.stdout + down.stderr
    assert_down(runs, rid, board)


def test_nothing_listens_on_the_board_but_sshd(runs, board):
    known = set(list_runs(runs))
    r = spdlab(runs, "up", str(lab(runs, board)))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    rid = new_run(runs, known)
    try:
        ss = subprocess.run(["ip", "netns", "exec", board.ns, "ss", "-Htlnu"],
                            capture_output=True, text=True, check=True)  # fmt: skip
        ports = {line.split()[4] for line in ss.stdout.splitlines()}
        assert ports == {f"{board.address}:22"}
    finally:
        assert spdlab(runs, "down", rid).returncode == 0
    assert_down(runs, rid, board)


def test_spdlab_run_on_the_board_passes(runs, board):
    known = set(list_runs(runs))
    r = spdlab(runs, "run", str(lab(runs, board)), "--metrics-addr", "")
    rid = new_run(runs, known)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    doc = json.loads((runs / rid / "result.json").read_text())
    [t] = doc["targets"]
    assert (t["kind"], t["build"], t["verdict"]) == ("ssh", "netkey", "PASS")
    m = t["measures"]
    assert m["removed_by_delete"] == 50 and m["drain_ticks"] <= 1
    assert (runs / rid / "targets/nk/nk/netkeyd.log").exists()  # fetched from the board
    assert_down(runs, rid, board)


def test_kill_9_during_up_then_down_cleans_here_and_on_the_board(runs, board):
    known = set(list_runs(runs))
    env = {**os.environ, "SPDLAB_RUNS_DIR": str(runs)}
    cmd = [sys.executable, "-m", "orchestrator.cli.main", "up", str(lab(runs, board))]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip

    def relay_recorded() -> str | None:
        for rid in set(list_runs(runs)) - known:
            doc = json.loads((runs / rid / "state.json").read_text())
            if doc["targets"].get("nk", {}).get("ssh_pid"):
                return rid
        return None

    try:
        rid = until(relay_recorded, "the relay's ssh recorded", 300)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    lr = LabRun.open(rid, base=runs)
    assert any(cleanup.still_there(r) for r in lr.state.resources("process"))
    assert any("/netkeyd --control" in c for c in spdlab_on_board(board))
    assert lr.down() == []
    assert_down(runs, rid, board)
    assert LabRun.open(rid, base=runs).down() == []  # idempotent


def test_a_kernel_without_pf_key_fails_provisioning_with_the_reason(runs, board):
    known = set(list_runs(runs))
    r = spdlab(runs, "up", str(lab(runs, board, build="kernel", name="kern")))
    assert r.returncode == 3, r.stdout[-2000:] + r.stderr[-2000:]
    assert "this kernel has no PF_KEY" in r.stdout + r.stderr
    rid = new_run(runs, known)
    assert spdlab(runs, "down", rid).returncode == 0
    assert_down(runs, rid, board)


def test_a_changed_host_key_is_refused(runs, board):
    other = keygen(runs / "other_host_key").split()
    known_hosts = runs / "known_hosts.changed"
    known_hosts.write_text(f"{board.address} {other[0]} {other[1]}\n")
    known = set(list_runs(runs))
    r = spdlab(runs, "up", str(lab(runs, board, name="moved", known_hosts=str(known_hosts))))
    assert r.returncode == 3, r.stdout[-2000:] + r.stderr[-2000:]
    out = " ".join((r.stdout + r.stderr).split())
    assert "the board's SSH host key changed: refusing to connect" in out, out
    assert "Traceback" not in out
    rid = new_run(runs, known)
    assert not spdlab_on_board(board)  # nothing ran there
    down = spdlab(runs, "down", rid)
    out = " ".join((down.stdout + down.stderr).split())
    assert down.returncode == 3, out  # it cannot tell: it says so
    assert "board moved: not reached (the board's SSH host key changed)" in out, out


def test_down_reports_a_board_it_cannot_reach_then_cleans_it_once_back(runs, board):
    known = set(list_runs(runs))
    r = spdlab(runs, "up", str(lab(runs, board)))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    rid = new_run(runs, known)
    board.sshd_down()
    try:
        down = spdlab(runs, "down", rid)
        out = " ".join((down.stdout + down.stderr).split())
        assert down.returncode == 3 and "board nk: not reached" in out, out
        assert "Traceback" not in out
        assert any("/netkeyd --control" in c for c in spdlab_on_board(board))  # still there
        assert leftovers(runs) == []  # everything here is gone all the same
    finally:
        board.sshd_up()
    assert spdlab(runs, "down", rid).returncode == 0
    assert_down(runs, rid, board)


def test_a_board_unreachable_at_up_fails_only_itself(runs, board):
    """Two boards, one answering and one whose port refuses: the one that answers runs
    and PASSes, the other is INFRA-ERROR with ssh's reason, and nothing is left."""
    path = runs / "two.yaml"
    path.write_text(LAB.format(name="near", build="netkey", address=board.address, key=board.key,
                               known_hosts=board.known_hosts, extra="").replace(
        "    build: netkey\n",
        "    build: netkey\n  - name: far\n    build: netkey\n    ssh: {port: 2}\n"))  # fmt: skip
    known = set(list_runs(runs))
    r = spdlab(runs, "run", str(path), "--metrics-addr", "", "--json")
    assert r.returncode == 3, r.stdout[-2000:] + r.stderr[-2000:]
    assert "Traceback" not in r.stdout + r.stderr
    rid = new_run(runs, known)
    doc = json.loads((runs / rid / "result.json").read_text())
    got = {t["name"]: t["verdict"] for t in doc["targets"]}
    assert got == {"near": "PASS", "far": "INFRA-ERROR"}, got
    (far,) = [t for t in doc["targets"] if t["name"] == "far"]
    why = " ".join(far["infra"]["message"].split())
    assert far["infra"]["phase"] == "up" and "provision: " in why, why
    assert "refused" in why.lower() or "unreachable" in why.lower(), why
    state = json.loads((runs / rid / "state.json").read_text())
    assert state["phase"] == "down"
    assert not any(cleanup.still_there(x) for x in state["resources"])
    until(lambda: not spdlab_on_board(board), "nothing of spdlab on the board", 30)
    assert not Path(state["targets"]["near"]["board_dir"]).exists()
