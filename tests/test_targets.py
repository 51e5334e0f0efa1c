"""Target drivers without namespaces: registry, state file, admin client, inventory, results."""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
from pathlib import Path

import pytest
import yaml

from orchestrator.errors import ConfigError, InfraError
from orchestrator.lab import load_lab
from orchestrator.runs import RunDir, list_runs, new_run_id, run_short
from orchestrator.targets import registry
from orchestrator.targets.admin import AdminClient
from orchestrator.targets.ansible import PlaybookResult, _handler, default_forks
from orchestrator.targets.base import TargetDriver
from orchestrator.targets.netns import NetnsDriver
from orchestrator.targets.protocols import PfkeyEndpoint, StatsEndpoint
from orchestrator.targets.state import StateFile

ROOT = Path(__file__).resolve().parents[1]


def test_registry_knows_netns_and_rejects_unknown_kinds():
    assert registry.driver_class("netns") is NetnsDriver
    assert issubclass(NetnsDriver, TargetDriver) and NetnsDriver.kind == "netns"
    with pytest.raises(
        ConfigError, match=r"unknown kind 'lxc'. Supported kinds are: docker, netns, qemu, ssh"
    ):
        registry.driver_class("lxc")


def test_registry_duplicate_kind_raises():
    with pytest.raises(ValueError, match="already registered"):

        @registry.register_kind("netns")
        class Other(NetnsDriver):
            pass


def test_run_ids_and_dirs(tmp_path):
    rid = new_run_id(0)
    assert rid.startswith("19700101-000000-") and len(rid) == 20
    assert len(run_short(rid)) == 4
    a = RunDir.create(tmp_path)
    StateFile.create(a.state_file, run_id=a.run_id)
    assert list_runs(tmp_path) == [a.run_id]
    assert RunDir.find(None, tmp_path).run_id == a.run_id
    assert RunDir.find(a.run_id[:10], tmp_path).run_id == a.run_id
    with pytest.raises(ConfigError, match="no such run"):
        RunDir.find("nope", tmp_path)


def test_state_file_is_atomic_and_records_once(tmp_path):
    st = StateFile.create(tmp_path / "state.json", run_id="x")
    st.record({"type": "netns", "name": "a"}, {"type": "netns", "name": "a"})
    st.record({"type": "netns", "name": "a"}, {"type": "file", "path": "/p"})
    st.set_target("gw", kind="netns", pid=3)
    again = StateFile.load(tmp_path / "state.json")
    assert [r["type"] for r in again.resources()] == ["netns", "file"]
    assert again.targets == {"gw": {"kind": "netns", "pid": 3}}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temporary left


@pytest.mark.parametrize("name, n", [("scale.yaml", 64), ("scale-256.yaml", 256)])
def test_netns_inventory_names_fit_linux_limits(tmp_path, name, n):
    lab = load_lab(ROOT / "labs" / name)
    run = RunDir.create(tmp_path)
    drv = NetnsDriver(run, StateFile.create(run.state_file), lab)
    inv = drv.inventory()["all"]
    hosts = inv["children"]["netns_gateway"]["hosts"]
    assert len(hosts) == n
    veths = {h["spdlab_veth"] for h in hosts.values()} | {inv["vars"]["spdlab_traffic_veth"]}
    assert len(veths) == n + 1 and all(len(v) <= 15 for v in veths)
    assert len({h["spdlab_ns"] for h in hosts.values()}) == n
    assert inv["vars"]["ansible_connection"] == "local"
    path = drv.write_inventory()
    assert yaml.safe_load(path.read_text())["all"]["children"]["controller"]["hosts"]


def test_endpoints_satisfy_the_protocols(tmp_path):
    lab = load_lab(ROOT / "labs" / "demo.yaml")
    run = RunDir.create(tmp_path)
    drv = NetnsDriver(run, StateFile.create(run.state_file), lab)
    ep = drv.pfkey_endpoint("gw-netkey")
    assert isinstance(ep, PfkeyEndpoint) and ep.address.endswith("gw-netkey/control.sock")
    assert isinstance(drv.stats_endpoint("gw-netkey"), StatsEndpoint)


def test_health_of_a_target_that_never_started(tmp_path):
    run = RunDir.create(tmp_path)
    st = StateFile.create(run.state_file)
    st.set_target("gw", kind="netns", build="netkey", pid=None)
    h = NetnsDriver(run, st).health("gw")
    assert not h.healthy and h.reason == "never started"
    st.set_target("gw", pid=os.getpid())  # alive, but not a netkeyd of this run
    assert "is not running" in NetnsDriver(run, st).health("gw").reason


def serve_admin(path: str, answers: dict[str, dict]) -> threading.Thread:
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)

    def loop():
        conn, _ = srv.accept()
        with conn, srv:
            buf = b""
            while True:
                data = conn.recv(4096)
                if not data:
                    return
                buf += data
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    word = line.decode().split()[0]
                    conn.sendall(json.dumps(answers.get(word, {"error": "?"})).encode() + b"\n")

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    return t


def test_admin_client_one_line_one_json(tmp_path):
    path = str(tmp_path / "admin.sock")
    t = serve_admin(path, {"ping": {"ok": True}, "stats": {"spd": {"alive": {"in": 2}}}})
    with AdminClient(path, timeout=2) as c:
        assert c.ping()
        assert c.stats()["spd"]["alive"]["in"] == 2
        assert c.request("bogus") == {"error": "?"}
    t.join(2)
    with pytest.raises(InfraError, match="admin"):
        AdminClient(str(tmp_path / "none.sock"), target="gw").ping()


def test_runner_events_name_the_failed_host():
    seen = []
    failures: dict[str, str] = {}
    handle = _handler(lambda h, t, s: seen.append((h, s)), failures, set())
    ok = {"event": "runner_on_ok", "event_data": {"host": "gw-1", "task": "Start"}}
    bad = {
        "event": "runner_on_failed",
        "event_data": {
            "host": "gw-2",
            "task": "Start netkeyd",
            "res": {"msg": "non-zero return code", "stderr": "x\n/bin/netkeyd: no such build\n"},
        },
    }
    assert handle(ok) and handle(bad) and handle({"event": "verbose"})
    assert seen == [("gw-1", "ok"), ("gw-2", "failed")]
    assert failures == {"gw-2": "Start netkeyd: non-zero return code: /bin/netkeyd: no such build"}
    r = PlaybookResult("failed", 2, {"failures": {"gw-2": 1}, "dark": {"gw-3": 1}}, failures)
    assert r.failed_hosts() == ["gw-2", "gw-3"] and not r.ok


def test_a_batched_task_names_the_hosts_it_failed_for():
    failures: dict[str, str] = {}
    batch: set[str] = set()
    handle = _handler(None, failures, batch)
    stderr = "failed gw-2: /bin/gone: no such firmware build\nfailed gw-5: not ready\n"
    handle({"event": "runner_on_failed", "event_data": {
        "host": "_controller", "task": "Start every netkeyd",
        "res": {"msg": "non-zero return code", "stderr": stderr}}})  # fmt: skip
    assert failures == {"gw-2": "Start every netkeyd: /bin/gone: no such firmware build",
                        "gw-5": "Start every netkeyd: not ready"}  # fmt: skip
    r = PlaybookResult("failed", 2, {"failures": {"_controller": 1}}, failures, "", batch)
    assert r.failed_hosts() == ["gw-2", "gw-5"]  # not the host that ran the batch


def test_forks_are_sized_to_the_machine():
    assert default_forks(1) == 1
    assert default_forks(1000) == 16 * (os.cpu_count() or 1)


def test_importing_the_lab_does_not_import_ansible():
    import subprocess

    probe = (
        "import sys, orchestrator.lab, orchestrator.targets.registry\n"
        "print('ansible_runner' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.strip() == "False", out.stderr
