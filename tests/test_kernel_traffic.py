"""Real kernels under referenced ESP traffic: a qemu target on the lab switch.

One `spdlab run` of Debian's kernel (build linux-af_key) with keepalive traffic from the
traffic host, for the module: its ESP reaches the guest's esp4 through the VM's virtio-net
NIC, is decrypted and checked against the N inbound policies; the guest's own flows
(spdlab_flows) go out through the N outbound mirrors, whose bundles hold them. Every
policy shows its use (the CURRENT lifetime's usetime the kernel stamps on each check and
bundle lookup) before the delete. The per-tick records carry the kernel's own counters:
policies allocated and freed (kprobes), bundles, ESP accepted and dropped; they show the
outbound policies unlinked at once but freed only when their flows next send. The VM,
its tap and the lab network are gone after.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from orchestrator.runs import list_runs
from orchestrator.targets import cleanup
from orchestrator.targets.session import LabRun
from orchestrator.wait import until

pytestmark = pytest.mark.qemu

ROOT = Path(__file__).resolve().parents[1]
N = 8
LAB = f"""\
name: ktraffic
range: 10.84.0.0/24
defaults: {{kind: qemu, build: linux-af_key, tick_ms: 1000}}
targets:
  - {{name: vm}}
scenario:
  policies: {N}
  traffic: keepalive
  keepalive_ticks: 2
  delete: delete
  algorithm: aes-cbc-hmac-sha512
expect:
  linux-af_key: {{drain_ticks_max: 0}}
"""


@pytest.fixture(scope="module")
def run():
    """One run of the lab: (its folder, spdlab's output, result.json's target)."""
    runs = Path(tempfile.mkdtemp(prefix="spdk", dir="/tmp"))
    (runs / "lab.yaml").write_text(LAB)
    env = {**os.environ, "SPDLAB_RUNS_DIR": str(runs)}
    cmd = [sys.executable, "-m", "orchestrator.cli.main", "run", str(runs / "lab.yaml"),
           "--metrics-addr", ""]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    [run_id] = list_runs(runs)
    d = runs / run_id
    doc = json.loads((d / "result.json").read_text())
    yield d, r, doc["targets"][0]
    shutil.rmtree(runs, ignore_errors=True)


def test_the_run_passes_with_every_policy_in_use_before_the_delete(run):
    d, r, t = run
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    # PASS: the referenced phase saw every policy used, else the target is INFRA-ERROR.
    assert (t["kind"], t["verdict"]) == ("qemu", "PASS"), t["reason"]
    before = (d / "targets" / "vm" / "spddump-before.txt").read_text()
    used = re.findall(r"lastused: (.*)", before)
    assert len(used) == 2 * N and not any("1970" in u for u in used), used
    # The outbound ones are also held: the table's reference and their bundle's.
    assert before.count("\tout ipsec") == N
    assert len(re.findall(r"refcnt=([2-9]|\d\d+)", before)) >= N, before
    sent = json.loads((d / "traffic.json").read_text())["targets"]["vm"]["sent"]
    assert sent >= N


def test_esp_reaches_the_guest_and_its_counters_are_measured(run):
    _, _, t = run
    m = t["measures"]
    # The SAs' own packet counts: decrypted and accepted by the guest's esp4.
    assert isinstance(m["esp_ok"], int) and m["esp_ok"] > 0, m["esp_ok"]
    assert isinstance(m["esp_drop"], int)
    recs = t["trials"][0]["records"]
    assert recs and all(r["counters"] == "kernel" for r in recs)
    assert all(isinstance(r["bundles"], int) and r["xfrm_stat"] for r in recs)


def test_the_kernel_counts_the_frees_of_the_deleted_policies(run):
    _, _, t = run
    m = t["measures"]
    assert m["removed_by_delete"] == 2 * N and m["drain_ticks"] == 0
    # kprobes on xfrm_policy_alloc / xfrm_policy_destroy_rcu: a measured free tick.
    assert isinstance(m["free_ticks"], int), m["free_ticks"]
    recs = t["trials"][0]["records"]
    assert sum(r["freed"] for r in recs) == 2 * N
    assert recs[-1]["allocated"] == 0 and recs[-1]["deleted_allocated"] == 0
    # Unlinked by the delete, the outbound policies stay allocated, held by the bundles
    # of the guest's flows, until each flow's next packet lets its bundle go.
    assert sum(r["unlinked"] for r in recs) == 2 * N
    assert max(r["deleted_allocated"] for r in recs) > 0
    assert max(r["deleted_allocated"] for r in recs) <= N
    assert m["free_ticks"] >= 1
    # No kernel counter counts a free while referenced: said, not a 0 that reads measured.
    assert "not_observable" in m["premature_frees"]


def test_the_vm_its_tap_and_the_network_are_gone(run):
    d, _, _ = run
    state = json.loads((d / "state.json").read_text())
    assert state["phase"] == "down"
    taps = [x for x in state["resources"] if x.get("what") == "tap"]
    assert len(taps) == 1
    assert not any(cleanup.still_there(x) for x in state["resources"])


@pytest.mark.parametrize("how", ["dies", "hangs"])
def test_a_guest_that_dies_or_hangs_mid_run_is_infra_error_and_the_other_finishes(tmp_path, how):
    """QEMU killed between the reference and the delete (a guest gone, as after a panic
    with -no-reboot), or stopped (a guest that hangs: its sockets stay open and nothing
    answers): that target is INFRA-ERROR with its console in the artifacts, and `down`
    removes the stopped VM as well."""
    runs = Path(tempfile.mkdtemp(prefix="spdk", dir="/tmp"))
    lab = runs / "lab.yaml"
    lab.write_text(LAB.replace("range: 10.84.0.0/24", "range: 10.85.0.0/24").replace(
        "  - {name: vm}", "  - {name: vm}\n  - {name: vm2}"))  # fmt: skip
    env = {**os.environ, "SPDLAB_RUNS_DIR": str(runs), "SPDLAB_STOP_AT": "referenced"}
    cmd = [sys.executable, "-m", "orchestrator.cli.main", "run", str(lab), "--metrics-addr", ""]
    with open(tmp_path / "out.txt", "w") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        until(lambda: stopped(proc.pid), "spdlab stopped after the reference", 600,
              alive=lambda: proc.poll() is None)  # fmt: skip
        [run_id] = list_runs(runs)
        state = json.loads((runs / run_id / "state.json").read_text())
        qemu = state["targets"]["vm"]["qemu_pid"]
        if how == "dies":
            os.kill(qemu, signal.SIGKILL)
            until(lambda: not Path(f"/proc/{qemu}").exists() or stopped(qemu, "Z"),
                  "the VM gone", 30)  # fmt: skip
        else:
            os.kill(qemu, signal.SIGSTOP)
            until(lambda: stopped(qemu), "the VM stopped", 30)
        os.kill(proc.pid, signal.SIGCONT)
        proc.wait(timeout=600)
        doc = json.loads((runs / run_id / "result.json").read_text())
        verdicts = {t["name"]: t["verdict"] for t in doc["targets"]}
        assert verdicts == {"vm": "INFRA-ERROR", "vm2": "PASS"}, verdicts
        console = runs / run_id / "targets" / "vm" / "vm" / "console.log"
        assert "spdlab-init" in console.read_text(errors="replace")
        state = json.loads((runs / run_id / "state.json").read_text())
        assert not any(cleanup.still_there(x) for x in state["resources"])
        assert not Path(f"/proc/{qemu}").exists() or stopped(qemu, "Z")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for rid in list_runs(runs):
            LabRun.open(rid, base=runs).down()
        shutil.rmtree(runs, ignore_errors=True)


def stopped(pid: int, states: str = "T") -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] in states
