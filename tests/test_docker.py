"""docker gateways for real: FROM scratch images per build, up/status/down, a run, mixed labs.

Needs root, dockerd (apt: docker.io) and the docker SDK. The `dockerd` session fixture uses
a daemon that already answers on /var/run/docker.sock, else starts one (no iptables, no
docker bridge: gateways are plugged into the lab's own switch) and stops exactly that one,
by PID, at the end. Every test removes what it made, even when it fails.
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

from orchestrator.lab import load_lab
from orchestrator.lab.builds import known_builds
from orchestrator.proc import terminate
from orchestrator.runs import RunDir, list_runs
from orchestrator.targets import cleanup
from orchestrator.targets.docker import DockerDriver
from orchestrator.targets.dockerapi import LABEL, RUN_LABEL, ensure_image, image_tag, make_static
from orchestrator.targets.session import LabRun
from orchestrator.targets.state import StateFile
from orchestrator.wait import WaitTimeout, until

pytestmark = [pytest.mark.docker, pytest.mark.netns]

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SOCK = "/var/run/docker.sock"

LAB = """\
name: dock
range: 10.83.0.0/16
defaults: {kind: docker, tick_ms: 50, flow_idle_ticks: 100, labels: {hardware: x86-vm}}
targets:
  - name: gw
    builds: [netkey, canary]
scenario: {policies: 100, traffic: keepalive, keepalive_ticks: 25, delete: delete}
expect:
  netkey: {drain_ticks_max: 1, premature_frees: 0}
  canary: {drain_ticks_min: 90}
"""

MIXED = """\
name: mixed
range: 10.84.0.0/16
defaults: {kind: netns, tick_ms: 100, flow_idle_ticks: 30, labels: {hardware: x86-vm}}
targets:
  - {name: ns, build: netkey}
  - {name: dk, build: canary, kind: docker}
scenario: {policies: 10}
"""


# ------------------------------------------------------------------ dockerd


def _docker_answers() -> bool:
    import docker

    try:
        docker.DockerClient(base_url=f"unix://{SOCK}", timeout=5).ping()
    except docker.errors.DockerException:
        return False
    return True


@pytest.fixture(scope="session")
def dockerd():
    """A docker daemon for the session: the running one, else one we start and stop by PID."""
    if _docker_answers():
        yield None
        return
    logdir = Path(tempfile.mkdtemp(prefix="spdlab-dockerd-"))
    with open(logdir / "dockerd.log", "w") as log:
        proc = subprocess.Popen(
            ["dockerd", "--iptables=false", "--ip-forward=false", "--bridge=none"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    try:
        try:
            until(lambda: os.path.exists(SOCK) and _docker_answers(), "dockerd to answer", 120,
                  alive=lambda: proc.poll() is None)  # fmt: skip
        except WaitTimeout as e:
            tail = (logdir / "dockerd.log").read_text()[-2000:]
            pytest.fail(f"dockerd did not come up (exit {proc.poll()}): {e}\n{tail}")
        yield proc.pid
    finally:
        terminate(proc, timeout=30)
        shutil.rmtree(logdir, ignore_errors=True)


@pytest.fixture(scope="session")
def client(dockerd):
    import docker

    c = docker.DockerClient(base_url=f"unix://{SOCK}", timeout=120)
    yield c
    c.close()


# ------------------------------------------------------------------ helpers


def snapshot(runs: Path, client) -> dict[str, set[str]]:
    """Containers, namespaces, links and processes that belong to runs under `runs`."""
    ids = list_runs(runs)
    shorts = [RunDir(r, runs).short for r in ids]
    containers = {  # the list call alone: a container removed meanwhile is no error
        c["Names"][0].lstrip("/")
        for c in client.api.containers(all=True, filters={"label": RUN_LABEL})
        if c["Labels"].get(RUN_LABEL) in ids
    }
    ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    procs = set()
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if str(runs) in cmd or (cmd.startswith("/netkeyd ") and "/spdlab/" in cmd):
                procs.add(f"{d.name} {cmd}")

    def ours(name: str) -> bool:
        return any(f"spdlab-{s}-" in name or name.startswith(f"s{s}") for s in shorts)

    names = {ln.split(": ")[1].split("@")[0] for ln in links.splitlines() if ": " in ln}
    return {
        "containers": containers,
        "netns": {w.split()[0] for w in ns.splitlines() if w and ours(w.split()[0])},
        "links": {x for x in names if ours(x)},
        "procs": procs,
    }


def assert_clean(runs: Path, client, before: dict[str, set[str]], settle: float = 30.0) -> None:
    def leaked() -> dict[str, set[str]]:
        after = snapshot(runs, client)
        return {k: after[k] - before[k] for k in after if after[k] - before[k]}

    with contextlib.suppress(WaitTimeout):
        until(lambda: not leaked(), "everything removed", settle)
    assert not (left := leaked()), f"left behind: {left}"


def spdlab(runs: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "SPDLAB_RUNS_DIR": str(runs), "PATH": f"{BIN}:{os.environ['PATH']}"}
    cmd = [sys.executable, "-m", "orchestrator.cli.main", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout)


def reaches(netns: str, address: str) -> bool:
    """A TCP connect from `netns` to a closed port of `address` is refused: the host is there."""
    probe = f"import socket; print(socket.socket().connect_ex(('{address}', 9)))"
    argv = ["ip", "netns", "exec", netns, sys.executable, "-c", probe]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    return r.stdout.strip() == "111"  # ECONNREFUSED


@pytest.fixture
def runs(monkeypatch, client):
    """A short runs dir (Unix socket paths stay under 108 bytes), torn down after."""
    d = Path(tempfile.mkdtemp(prefix="spdd", dir="/tmp"))
    monkeypatch.setenv("SPDLAB_RUNS_DIR", str(d))
    before = snapshot(d, client)
    yield d
    for rid in list_runs(d):
        LabRun.open(rid, base=d).down()
    assert_clean(d, client, before)
    shutil.rmtree(d, ignore_errors=True)


def lab_file(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "lab.yaml"
    p.write_text(text)
    return p


# ------------------------------------------------------------------ tests


def test_every_build_is_a_from_scratch_image_that_runs_netkeyd(client):
    builds = known_builds()
    make_static(builds)
    for b in builds:
        tag = ensure_image(client, b)
        assert tag == image_tag(b) and "+" not in tag
        image = client.images.get(tag)
        assert len(image.attrs["RootFS"]["Layers"]) == 1  # FROM scratch: netkeyd alone
        assert image.labels[f"{LABEL}.build"] == b
        assert image.attrs["Config"]["Entrypoint"] == ["/netkeyd"]
        out = client.containers.run(tag, ["--version"], remove=True, network_mode="none")
        line = out.decode().strip()
        assert line.startswith(f"netkeyd {b} tree="), line
        patches = image.labels[f"{LABEL}.patches"]
        assert line.endswith(f"patches={patches}"), (line, patches)
    canary = client.images.get(image_tag("canary+nextsp")).labels
    assert canary[f"{LABEL}.patches"] == "canary-earlyexit seed-nextsp-canary"
    assert len(canary[f"{LABEL}.patches.sha256"].split()) == 2
    # cached: a second ensure builds nothing
    before = client.images.get(image_tag("netkey")).id
    assert client.images.get(ensure_image(client, "netkey")).id == before


def test_docker_lab_up_answers_pfkey_status_healthy_down_clean(runs, client, tmp_path):
    before = snapshot(runs, client)
    r = spdlab(runs, "up", str(lab_file(tmp_path, LAB)))
    assert r.returncode == 0, r.stderr
    run_id = r.stdout.strip().splitlines()[-1]
    lr = LabRun.open(run_id, base=runs)
    assert lr.targets() == ["gw-canary", "gw-netkey"]
    for name in lr.targets():
        with lr.pfkey_endpoint(name).connect() as c:
            assert c.register(3).errno == 0, name
    assert lr.traffic_netns() == f"spdlab-{lr.run.short}-th"
    st = spdlab(runs, "status", "--json")
    assert st.returncode == 0, st.stdout + st.stderr
    doc = json.loads(st.stdout)
    assert all(t["healthy"] and t["kind"] == "docker" and t["pid"] for t in doc["targets"])
    # the traffic host reaches each container over the lab switch
    for t in lr.state.targets.values():
        assert reaches(lr.traffic_netns(), t["address"]), t
    state = StateFile.load(lr.run.state_file)
    assert len(state.resources("container")) == 2
    assert {r["name"] for r in state.resources("link") if r["what"] == "veth"} >= {
        f"s{lr.run.short}d0",
        f"s{lr.run.short}d1",
    }
    d = spdlab(runs, "down", "--json")
    assert d.returncode == 0, d.stderr
    assert json.loads(d.stdout)["runs"][run_id]["problems"] == []
    assert not any(cleanup.still_there(r) for r in state.resources())
    assert_clean(runs, client, before)
    assert spdlab(runs, "down", run_id).returncode == 0  # idempotent


def test_killed_container_is_unhealthy_and_down_after_a_crash_cleans(runs, client, tmp_path):
    before = snapshot(runs, client)
    lab = load_lab(lab_file(tmp_path, LAB))
    lr = LabRun.up(lab)
    victim = "gw-netkey"
    client.containers.get(lr.state.targets[victim]["container"]).kill()
    st = spdlab(runs, "status", "--json")
    assert st.returncode == 1
    health = {t["name"]: t for t in json.loads(st.stdout)["targets"]}
    assert not health[victim]["healthy"] and "exited" in health[victim]["reason"]
    assert health["gw-canary"]["healthy"]
    # a crash mid-provision: containers created, never started, nothing but state.json left
    run = RunDir.create(runs)
    state = StateFile.create(run.state_file, run_id=run.run_id, lab=str(lab.path))
    (run.path / "lab.json").write_text(lab.model_dump_json())
    DockerDriver(run, state, lab).provision()
    assert len(snapshot(runs, client)["containers"]) == 4
    assert spdlab(runs, "down", "--all").returncode == 0
    assert_clean(runs, client, before)


def test_sigint_mid_up_removes_the_containers_and_exits_130(runs, client, tmp_path):
    before = snapshot(runs, client)
    env = {**os.environ, "SPDLAB_RUNS_DIR": str(runs), "PATH": f"{BIN}:{os.environ['PATH']}"}
    p = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli.main", "up", str(lab_file(tmp_path, LAB))],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        until(lambda: snapshot(runs, client)["containers"], "up to create containers", 240,
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
    assert_clean(runs, client, before)


def test_run_on_docker_targets_canary_drains_per_tick(runs, client, tmp_path):
    r = spdlab(runs, "run", str(lab_file(tmp_path, LAB)), "--metrics-addr", "")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (run_id,) = list_runs(runs)
    doc = json.loads((runs / run_id / "result.json").read_text())
    by = {t["build"]: t for t in doc["targets"]}
    assert by["netkey"]["measures"]["drain_ticks"] == 0 and by["netkey"]["verdict"] == "PASS"
    # One unlink per tick from the first SPDDELETE on, however long the delete took.
    canary = by["canary"]["trials"][0]["measures"]
    assert abs(canary["drain_ticks_from_issue"] - 100) <= 1 and by["canary"]["verdict"] == "PASS"
    assert all(t["kind"] == "docker" for t in doc["targets"])
    # the ESP keepalives from the traffic host's namespace reached both containers
    for name in ("gw-netkey", "gw-canary"):
        stats = json.loads((runs / run_id / "targets" / name / name / "stats.json").read_text())
        assert stats["esp"]["ok"] >= 100, (name, stats["esp"])


def test_mixed_lab_shares_one_switch_and_traffic_host(runs, client, tmp_path):
    before = snapshot(runs, client)
    lr = LabRun.up(load_lab(lab_file(tmp_path, MIXED)))
    assert {n: lr.state.targets[n]["kind"] for n in lr.targets()} == {"dk": "docker", "ns": "netns"}
    assert all(h.healthy for h in lr.health())
    sw = f"spdlab-{lr.run.short}-sw"
    assert len(lr.state.resources("netns")) == 3  # switch, traffic host, the netns gateway
    ports = subprocess.run(["ip", "-n", sw, "-o", "link", "show", "master", "br0"],
                           capture_output=True, text=True).stdout  # fmt: skip
    assert ports.count(": s") == 3  # traffic host, netns gateway, container
    for t in lr.state.targets.values():
        assert reaches(lr.traffic_netns(), t["address"]), t
    assert lr.down() == []
    assert_clean(runs, client, before)


def test_driver_module_does_not_import_the_docker_sdk():
    code = "import sys, orchestrator.targets.docker; print('docker' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.stdout.strip() == "False", r.stderr
