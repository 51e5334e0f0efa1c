"""Multi-host labs for real: lab hosts that are network namespaces running Debian's sshd.

Each lab host gets its gateways, its switch and traffic host and a traffic sender, all
provisioned by the playbooks over SSH; spdlab reaches every gateway through an SSH relay
bridge and a forwarded admin socket. A host's sshd runs in a mount namespace of its own
(`ip netns exec`), so the namespaces it makes are mounted there only: spdlab reaches them
through SSH or not at all.

- 3 hosts × 8 gateways run the demo's builds and scenario and match the same 24 gateways
  on this machine: the same verdicts and comparisons, drain ticks within the same bounds.
- A host unreachable at `up`, one with a changed host key, one lost mid-drain: its
  targets are INFRA-ERROR with the reason, the other host's run.
- `down` after kill -9 and after Ctrl-C of spdlab leaves nothing on any host.

Needs root, openssh-server and openssh-client, python3-scapy (`scripts/deps.sh ssh`).
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

from orchestrator import proc
from orchestrator.runs import RunDir, list_runs
from orchestrator.teardown import down_all
from orchestrator.wait import until

pytestmark = [pytest.mark.ssh, pytest.mark.netns]

ROOT = Path(__file__).resolve().parents[1]
DEMO_BUILDS = ["netkey", "netkey+nextsp", "netipsec", "netipsec+split", "canary", "canary+nextsp"]
POLICIES = 100
# The demo's expectations, scaled to POLICIES (labs/demo.yaml: 2000 policies, canary ≥ 1900).
EXPECT = f"""\
expect:
  netkey: {{drain_ticks_max: 1, premature_frees: 0}}
  netkey+nextsp: {{same_as: netkey}}
  netipsec: {{premature_frees_min: 1}}
  netipsec+split: {{premature_frees: 0}}
  canary: {{drain_ticks_min: {POLICIES - POLICIES // 20}}}
  canary+nextsp: {{drain_ticks_max: 1}}
"""


@pytest.fixture(scope="module")
def runs():
    yield from short_runs("spmh")


@pytest.fixture(scope="module")
def hosts(runs):
    """Three lab hosts, each its own namespace, sshd, host key and client key. A run a
    failed test left up is taken down while its hosts still answer."""
    made: list[Board] = []
    dirs = []
    try:
        for _ in range(3):
            d = Path(tempfile.mkdtemp(prefix="spmhh", dir="/tmp"))
            dirs.append(d)
            made.append(Board(d).start())
        yield made
    finally:
        for b in made:
            if b.sshd is not None and b.sshd.poll() is not None:
                b.sshd_up()  # a test stopped it
        down_all(runs)
        for b in made:
            b.stop()
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)


def host_block(hosts: list[Board], known: dict[int, Path] | None = None) -> str:
    lines = ["hosts:"]
    for i, b in enumerate(hosts, 1):
        kh = (known or {}).get(i, b.known_hosts)
        lines.append(f"  h{i}: {{address: {b.address}, user: root, key: {b.key}, "
                     f"known_hosts: {kh}, python: /usr/bin/python3}}")  # fmt: skip
    return "\n".join(lines) + "\n"


def lab_file(runs: Path, name: str, hosts: list[Board] | None, per_host: int,
             n_hosts: int, known: dict[int, Path] | None = None,
             builds: list[str] | None = None) -> Path:  # fmt: skip
    """Gateways h<i>-<build> (and extras) on each host, or the same ones on this machine."""
    text = f"name: {name}\nrange: 10.78.0.0/22\n"
    text += host_block(hosts, known) if hosts else ""
    # flows idle out only after 1000 ticks: a sender starved by a loaded machine must not
    # let policies go unused before the delete (no measure asserted here depends on it)
    text += "defaults: {kind: netns, tick_ms: 50, flow_idle_ticks: 1000}\ntargets:\n"
    extra = ["netkey", "canary"]
    for i in range(1, n_hosts + 1):
        on = f", host: h{i}" if hosts else ""
        mine = (builds or DEMO_BUILDS + extra)[:per_host]
        six, rest = mine[:6], mine[6:]
        text += f"  - {{name: h{i}, builds: [{', '.join(six)}]{on}}}\n"
        if rest:
            text += f"  - {{name: h{i}x, builds: [{', '.join(rest)}]{on}}}\n"
    text += (f"scenario: {{policies: {POLICIES}, traffic: keepalive, keepalive_ticks: 25, "
             "delete: delete, timeout_ticks: 600}\n")  # fmt: skip
    p = runs / f"{name}.yaml"
    p.write_text(text + EXPECT)
    return p


def spdlab(runs: Path, *args: str, env: dict[str, str] | None = None,
           wait: bool = True) -> subprocess.CompletedProcess | subprocess.Popen:  # fmt: skip
    e = {**os.environ, "SPDLAB_RUNS_DIR": str(runs), **(env or {})}
    cmd = [sys.executable, "-m", "orchestrator.cli.main", *args]
    if not wait:
        return subprocess.Popen(cmd, env=e, cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, env=e, cwd=ROOT, timeout=1800)


def new_run(runs: Path, known: set[str]) -> str:
    [rid] = set(list_runs(runs)) - known
    return rid


def result(runs: Path, rid: str) -> dict:
    return json.loads((runs / rid / "result.json").read_text())


def on_hosts(runs: Path, rid: str) -> list[str]:
    """What a run left on its lab hosts: processes and folders named after it, and its
    namespaces (each host's sshd shares this kernel and filesystem, not its mounts)."""
    short = RunDir(rid, runs).short
    mark = f"spdlab-{short}-"
    left = [f"folder {p}" for p in Path("/tmp").glob(f"{mark}*")]
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        cmd = proc.cmdline(int(d.name)) or ""
        if f"/tmp/{mark}" in cmd:
            left.append(f"process {d.name}: {cmd[:120]}")
    netns = Path("/run/netns")
    left += [f"namespace {p.name}" for p in netns.glob(f"{mark}*")] if netns.is_dir() else []
    return left


def assert_clean(runs: Path, rid: str) -> None:
    state = json.loads((runs / rid / "state.json").read_text())
    assert state["phase"] == "down"
    until(lambda: not on_hosts(runs, rid), "nothing of the run on any lab host", 30)
    assert leftovers(runs) == []


def verdicts(doc: dict) -> dict[str, str]:
    return {t["name"]: t["verdict"] for t in doc["targets"]}


# ------------------------------------------------------------------ tests


@pytest.mark.timeout(3600)  # two runs of 24 gateways each, on two shared cores
def test_three_hosts_of_eight_match_one_host(runs, hosts):
    """The demo's builds on 3 hosts × 8 gateways, then the same 24 gateways here."""
    known = set(list_runs(runs))
    r = spdlab(runs, "run", str(lab_file(runs, "multi", hosts, 8, 3)), "--metrics-addr", "")
    multi = new_run(runs, known)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert_clean(runs, multi)
    known.add(multi)
    r = spdlab(runs, "run", str(lab_file(runs, "single", None, 8, 3)), "--metrics-addr", "")
    single = new_run(runs, known)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert_clean(runs, single)

    m, s = result(runs, multi), result(runs, single)
    assert len(m["targets"]) == 24 and verdicts(m) == verdicts(s)
    assert set(verdicts(m).values()) == {"PASS"}
    assert [(c["patched"], c["base"], c["verdict"]) for c in m["comparisons"]] == [
        (c["patched"], c["base"], c["verdict"]) for c in s["comparisons"]
    ]
    assert len(m["comparisons"]) >= 4
    # the demo's drains (README): the canary one policy a tick, netipsec ≈ its refcnt ticks
    bounds = {"canary": (POLICIES - POLICIES // 20, POLICIES), "netipsec": (1, 3)}
    for doc in (m, s):
        for t in doc["targets"]:
            lo, hi = bounds.get(t["build"], (0, 1))
            d = t["measures"]["drain_ticks"]
            assert d is not None and lo <= d <= hi, (t["name"], d)
    # every host sent its own traffic, and the records came back to this one result.json
    state = json.loads((runs / multi / "state.json").read_text())
    assert {t["host"] for t in state["targets"].values()} == {"h1", "h2", "h3"}
    assert all(tr["sent"] > 0 for tr in m["traffic"]) and len(m["traffic"]) == 3
    for t in m["targets"]:
        records = t["trials"][0]["records"]
        assert records, t["name"]  # per-tick records, read through each host's forward


def two_host_lab(runs: Path, hosts: list[Board], name: str, **kw) -> Path:
    return lab_file(runs, name, hosts[:2], 2, 2, builds=["netkey", "canary"], **kw)


def test_a_host_unreachable_at_up_fails_only_its_targets(runs, hosts):
    hosts[1].sshd_down()
    try:
        known = set(list_runs(runs))
        r = spdlab(runs, "run", str(two_host_lab(runs, hosts, "unreach")), "--metrics-addr", "")
    finally:
        hosts[1].sshd_up()
    assert set(list_runs(runs)) - known, r.stdout[-3000:] + r.stderr[-3000:]
    rid = new_run(runs, known)
    out = r.stdout + r.stderr
    assert r.returncode == 3 and "Traceback" not in out, out[-3000:]
    doc = result(runs, rid)
    for t in doc["targets"]:
        if t["name"].startswith("h2"):
            assert t["verdict"] == "INFRA-ERROR", t
            assert t["infra"]["phase"] == "up"
            assert "lab host h2" in t["reason"] and "Connection refused" in t["reason"], t
        else:
            assert t["verdict"] == "PASS", t
    assert_clean(runs, rid)


def test_a_changed_host_key_is_refused(runs, hosts):
    other = keygen(runs / "moved_host_key").split()
    kh = runs / "known_hosts.moved"
    kh.write_text(f"{hosts[1].address} {other[0]} {other[1]}\n")
    known = set(list_runs(runs))
    lab = two_host_lab(runs, hosts, "moved", known={2: kh})
    r = spdlab(runs, "run", str(lab), "--metrics-addr", "")
    rid = new_run(runs, known)
    out = " ".join((r.stdout + r.stderr).split())
    assert r.returncode == 3 and "Traceback" not in out, out[-3000:]
    doc = result(runs, rid)
    for t in doc["targets"]:
        if t["name"].startswith("h2"):
            assert t["verdict"] == "INFRA-ERROR"
            assert "the lab host's SSH host key changed: refusing to connect" in t["reason"], t
        else:
            assert t["verdict"] == "PASS", t
    assert not [c for c in hosts[1].ps() if "spdlab-" in c]  # nothing ran on h2
    cfg = (runs / rid / "hosts" / "h2" / "ssh_config").read_text()
    assert "StrictHostKeyChecking yes" in cfg
    down = spdlab(runs, "down", rid)  # h2 cannot be asked: down says so
    assert down.returncode == 3 and "lab host h2: not reached" in down.stdout + down.stderr
    assert_clean(runs, rid)  # nothing was ever made there


def stopped(p: subprocess.Popen) -> bool:
    if p.poll() is not None:
        raise AssertionError(f"spdlab exited {p.returncode}: {p.stdout.read()[-3000:]}")
    stat = Path(f"/proc/{p.pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] == "T"


def test_a_host_lost_mid_drain_fails_its_targets_and_down_reports_it(runs, hosts):
    known = set(list_runs(runs))
    lab = two_host_lab(runs, hosts, "lost")
    p = spdlab(runs, "run", str(lab), "--metrics-addr", "", env={"SPDLAB_STOP_AT": "deleted"},
               wait=False)  # fmt: skip
    try:
        until(lambda: stopped(p), "spdlab stopped after the delete", 900)
        hosts[1].sshd_down()  # its sshd and every session: the relays' channels end
        p.send_signal(signal.SIGCONT)
        out, _ = p.communicate(timeout=900)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    rid = new_run(runs, known)
    try:
        assert p.returncode == 3 and "Traceback" not in out, out[-3000:]
        doc = result(runs, rid)
        for t in doc["targets"]:
            if t["name"].startswith("h2"):
                assert t["verdict"] == "INFRA-ERROR", t
                assert t["infra"]["phase"] in ("deleted", "drained"), t
                assert "lab host h2" in t["reason"], t
            else:
                assert t["verdict"] == "PASS", t
        assert "down: lab host h2: not reached" in " ".join(out.split()), out[-3000:]
        assert on_hosts(runs, rid)  # h2's gateways still run there: nobody could stop them
    finally:
        hosts[1].sshd_up()
        down = spdlab(runs, "down", rid)  # once h2 is back, the next down cleans it
    assert down.returncode == 0, down.stdout + down.stderr
    assert_clean(runs, rid)


@pytest.mark.parametrize("how", ["kill-9", "ctrl-c"])
def test_down_cleans_every_host_after_spdlab_dies(runs, hosts, how):
    known = set(list_runs(runs))
    lab = two_host_lab(runs, hosts, f"crash-{how}")
    p = spdlab(runs, "run", str(lab), "--metrics-addr", "", env={"SPDLAB_STOP_AT": "referenced"},
               wait=False)  # fmt: skip
    try:
        until(lambda: stopped(p), "spdlab stopped with traffic running on both hosts", 900)
        rid = new_run(runs, known)
        assert len(on_hosts(runs, rid)) > 4  # gateways, senders, namespaces, folders
        if how == "kill-9":
            p.kill()
        else:
            p.send_signal(signal.SIGINT)
            p.send_signal(signal.SIGCONT)
        p.communicate(timeout=900)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    if how == "kill-9":
        down = spdlab(runs, "down", rid)
        assert down.returncode == 0, down.stdout + down.stderr
    assert_clean(runs, rid)
