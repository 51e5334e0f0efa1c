"""netns gateways for real: bring-up, teardown, SIGINT mid-up, kill -9, standalone playbooks.

Needs root, iproute2 and a C compiler (the playbook builds the firmware). Every test removes
what it made in a finalizer, even when it fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from orchestrator.errors import InfraError
from orchestrator.lab import load_lab
from orchestrator.runs import RunDir, list_runs
from orchestrator.targets.netns import NetnsDriver
from orchestrator.targets.session import LabRun
from orchestrator.targets.state import StateFile
from orchestrator.wait import WaitTimeout, until

pytestmark = pytest.mark.netns

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


LAB = """\
name: mixed
range: 10.79.0.0/16
defaults: {kind: netns, tick_ms: 100, flow_idle_ticks: 30, labels: {hardware: x86-vm}}
targets:
  - {name: gw, builds: [netkey, netipsec, netipsec+split, canary+nextsp], count: 2}
scenario: {policies: 10}
"""


# ------------------------------------------------------------------ helpers


def snapshot(runs: Path) -> dict[str, set[str]]:
    """Namespaces, host links and processes that belong to runs under `runs`."""
    shorts = [RunDir(r, runs).short for r in list_runs(runs)]
    ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    procs = set()
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if str(runs) in cmd:
                procs.add(f"{d.name} {cmd}")

    def ours(name: str) -> bool:
        return any(f"spdlab-{s}-" in name or name.startswith(f"s{s}") for s in shorts)

    return {
        "netns": {w.split()[0] for w in ns.splitlines() if w and ours(w.split()[0])},
        "links": {x for x in _all_link_names(links) if ours(x)},
        "procs": procs,
    }


def _all_link_names(out: str) -> set[str]:
    return {ln.split(": ")[1].split("@")[0] for ln in out.splitlines() if ": " in ln}


def assert_clean(runs: Path, before: dict[str, set[str]], settle: float = 30.0) -> None:
    def leaked() -> dict[str, set[str]]:
        after = snapshot(runs)
        return {k: after[k] - before[k] for k in after if after[k] - before[k]}

    with contextlib.suppress(WaitTimeout):
        until(lambda: not leaked(), "everything removed", settle)
    assert not (left := leaked()), f"left behind: {left}"


def gone(pid: int) -> bool:
    """The process has exited (reaped, or a zombie nobody reaped yet)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def spdlab(runs: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "SPDLAB_RUNS_DIR": str(runs), "PATH": f"{BIN}:{os.environ['PATH']}"}
    cmd = [sys.executable, "-m", "orchestrator.cli.main", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout)


def register_ok(path: str) -> bool:
    """The role's own readiness probe: one SADB_REGISTER, errno 0."""
    probe = ROOT / "playbooks/roles/netns_gateway/files/pfkey_ready.py"
    r = subprocess.run([sys.executable, str(probe), path, "--timeout", "5"], capture_output=True)
    return r.returncode == 0


@pytest.fixture
def runs(monkeypatch):
    """A short runs dir (Unix socket paths must stay under 108 bytes), torn down after."""
    d = Path(tempfile.mkdtemp(prefix="spdl", dir="/tmp"))
    monkeypatch.setenv("SPDLAB_RUNS_DIR", str(d))
    before = snapshot(d)
    yield d
    for rid in list_runs(d):
        LabRun.open(rid, base=d).down()
    assert_clean(d, before)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def lab_file(tmp_path):
    p = tmp_path / "mixed.yaml"
    p.write_text(LAB)
    return p


# ------------------------------------------------------------------ tests


def test_bring_up_answers_pfkey_and_is_healthy_then_down_is_clean(runs, lab_file):
    before = snapshot(runs)
    r = spdlab(runs, "up", str(lab_file))
    assert r.returncode == 0, r.stderr
    run_id = r.stdout.strip().splitlines()[-1]
    assert run_id in list_runs(runs)
    lr = LabRun.open(run_id, base=runs)
    assert len(lr.targets()) == 8
    for name in lr.targets():
        with lr.pfkey_endpoint(name).connect() as c:
            reply = c.register(3)
        assert reply.errno == 0, name
    st = spdlab(runs, "status", "--json")
    assert st.returncode == 0, st.stdout + st.stderr
    doc = json.loads(st.stdout)
    assert doc["phase"] == "up"
    assert all(t["healthy"] and t["pid"] and t["policies"] == 0 for t in doc["targets"])
    assert {t["build"] for t in doc["targets"]} == {
        "netkey", "netipsec", "netipsec+split", "canary+nextsp",
    }  # fmt: skip
    # every resource is in state.json
    state = StateFile.load(lr.run.state_file)
    assert len(state.resources("process")) == 8
    assert len(state.resources("netns")) == 10  # 8 gateways, switch, traffic host

    d = spdlab(runs, "down", "--json")
    assert d.returncode == 0, d.stderr
    assert json.loads(d.stdout)["runs"][run_id]["problems"] == []
    assert_clean(runs, before)
    again = spdlab(runs, "down", run_id)  # idempotent
    assert again.returncode == 0, again.stderr


def test_kill_9_shows_unhealthy_and_down_still_cleans(runs, lab_file):
    before = snapshot(runs)
    lab = load_lab(lab_file)
    lr = LabRun.up(lab)
    victim = lr.targets()[3]
    pid = lr.state.targets[victim]["pid"]
    os.kill(pid, signal.SIGKILL)
    until(lambda: gone(pid), f"pid {pid} to exit", 30)
    st = spdlab(runs, "status", "--json")
    assert st.returncode == 1
    health = {t["name"]: t for t in json.loads(st.stdout)["targets"]}
    assert not health[victim]["healthy"]
    assert f"pid {pid}" in health[victim]["reason"]
    assert all(h["healthy"] for n, h in health.items() if n != victim)
    text = spdlab(runs, "status")
    assert "unhealthy" in text.stdout
    assert spdlab(runs, "down").returncode == 0
    assert_clean(runs, before)


def test_sigint_mid_up_tears_down_and_exits_130(runs, lab_file):
    before = snapshot(runs)
    env = {**os.environ, "SPDLAB_RUNS_DIR": str(runs), "PATH": f"{BIN}:{os.environ['PATH']}"}
    p = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli.main", "up", str(lab_file)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        until(lambda: snapshot(runs)["netns"], "up to create namespaces", 240,
              alive=lambda: p.poll() is None)  # fmt: skip
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, err
    assert "Traceback" not in err
    (run_id,) = list_runs(runs)
    assert StateFile.load(runs / run_id / "state.json").phase == "down"
    assert_clean(runs, before)


def test_failed_host_is_named_with_ansibles_message(runs, lab_file, monkeypatch):
    before = snapshot(runs)
    real = NetnsDriver.inventory

    def broken(self):
        inv = real(self)
        inv["all"]["children"]["netns_gateway"]["hosts"]["gw-netipsec-2"]["spdlab_build"] = "gone"
        return inv

    monkeypatch.setattr(NetnsDriver, "inventory", broken)
    with pytest.raises(InfraError) as e:
        LabRun.up(load_lab(lab_file))
    assert "gw-netipsec-2" in str(e.value)
    assert "no such firmware build" in str(e.value)
    assert "gw-netkey-1" not in str(e.value)
    assert_clean(runs, before)


def test_standalone_playbooks_on_a_generated_inventory(runs, lab_file):
    before = snapshot(runs)
    lab = load_lab(lab_file)
    run = RunDir.create(runs)
    state = StateFile.create(run.state_file, run_id=run.run_id)
    driver = NetnsDriver(run, state, lab)
    inventory = driver.write_inventory()
    state.set_targets({t.name: {"kind": "netns", "build": t.build} for t in lab.targets})
    state.record(*({"type": "netns", "name": driver.netns(t.name)} for t in lab.targets))
    state.record(
        {"type": "netns", "name": driver.switch_ns}, {"type": "netns", "name": driver.traffic_ns}
    )
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    up = subprocess.run(
        ["ansible-playbook", "-i", str(inventory), "playbooks/up.yml"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert up.returncode == 0, up.stdout[-3000:]
    assert "failed=0" in up.stdout
    for t in lab.targets:
        assert register_ok(str(run.target_dir(t.name) / "control.sock")), t.name
    down = subprocess.run(
        ["ansible-playbook", "-i", str(inventory), "playbooks/down.yml"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert down.returncode == 0, down.stdout[-3000:]
    state.set(phase="down")
    assert_clean(runs, before)


def test_down_all_cleans_every_run(runs, lab_file):
    before = snapshot(runs)
    small = lab_file.parent / "small.yaml"
    small.write_text(LAB.replace("count: 2", "count: 1").replace("10.79.", "10.80."))
    a = LabRun.up(load_lab(small))
    b = LabRun.up(load_lab(small))
    assert a.run_id != b.run_id
    r = spdlab(runs, "down", "--all")
    assert r.returncode == 0, r.stderr
    assert_clean(runs, before)
