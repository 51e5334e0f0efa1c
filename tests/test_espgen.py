"""The native sender (firmware/gen/espgen, ASan+UBSan) against a real netkeyd.

Two espgen processes, one per core, each with its own SAs, flood a gateway namespace at
full rate. netkeyd is stopped (SIGSTOP) while they send, so every packet queues on its
socket whatever the machine's load, and is read once it continues: it must accept every
one (no replay, ICV or policy drop), and scapy must decrypt the frames the processes sent.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import pytest
import traffic_fixtures
from scapy.layers.inet import IP
from scapy.utils import rdpcap
from traffic_fixtures import GW, TR, TrafficLab, needs_netns

from orchestrator.errors import ConfigError, InfraError
from orchestrator.proc import has_env, run_env, run_marker
from orchestrator.traffic import native, scenario, template
from orchestrator.traffic.native import NativeFlood
from orchestrator.traffic.nativerun import NativeRun, cannot_carry
from orchestrator.traffic.run import TrafficRun
from orchestrator.traffic.sender import Pacing, load_seq_state
from orchestrator.wait import until

traffic_lab = traffic_fixtures.traffic_lab  # the fixture, by name
pytestmark = needs_netns
N = 64  # SAs and policies


@pytest.fixture(scope="module", autouse=True)
def built() -> None:
    r = subprocess.run(["make", "-s", "-C", str(traffic_fixtures.FIRMWARE), "gen"],
                       capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr


def _flood(lab: TrafficLab, sc: scenario.Scenario, tmp: Path, count: int, **kw) -> tuple:
    """A count-limited 2-process flood while netkeyd is stopped; (stats, flood, counters)."""
    assert lab.nk is not None
    before = lab.esp()
    os.kill(lab.nk.pid, signal.SIGSTOP)
    try:
        flood = NativeFlood(sc.spec, tmp, lab.tr_ns, procs=2, count=count, asan=True, **kw)
        stats = flood.start().wait(300)
    finally:
        os.kill(lab.nk.pid, signal.SIGCONT)
    return stats, flood, lab.wait_esp(stats.sent, before)


def test_two_processes_each_own_sas_and_netkeyd_accepts_every_packet(traffic_lab, tmp_path):
    lab = traffic_lab()
    sc = scenario.generate(N, TR, GW)
    lab.install(sc)
    stats, flood, moved = _flood(lab, sc, tmp_path / "a", 3000)
    assert stats.procs == 2 and stats.sent == 3000 and stats.errors == 0
    assert [r["sent"] for r in stats.per_proc] == [1500, 1500]
    keys = [{sa.key for sa in p.sas} for p in flood.parts]
    assert not keys[0] & keys[1] and keys[0] | keys[1] == {sa.key for sa in sc.spec.sas}
    assert moved == {"ok": 3000}, moved
    # round robin over 32 flows per process: every SA used 1500 / 32 numbers, rounded
    assert sorted(set(stats.last_seq.values())) == [46, 47]
    assert flood.check_samples(stats) == 2 * 2 * 4


def test_a_second_flood_continues_every_sas_numbers(traffic_lab, tmp_path):
    lab = traffic_lab()
    sc = scenario.generate(N, TR, GW)
    lab.install(sc)
    first, _, moved = _flood(lab, sc, tmp_path / "a", 1000)
    assert moved == {"ok": 1000}, moved
    second, flood, moved = _flood(lab, sc, tmp_path / "b", 1000, seq_start=first.last_seq)
    assert moved == {"ok": 1000}, moved  # a reused number would be a replay drop
    assert all(second.last_seq[k] > first.last_seq[k] for k in first.last_seq)
    flood.check_samples(second)
    # and the same numbers again are replays, every one of them
    _, _, moved = _flood(lab, sc, tmp_path / "c", 1000, seq_start=first.last_seq)
    assert moved.get("ok", 0) == 0 and sum(moved.values()) == 1000, moved


def test_split_deals_sas_round_robin_with_their_flows():
    sc = scenario.generate(5, TR, GW)
    parts = native.split(sc.spec, 2)
    assert [len(p.sas) for p in parts] == [3, 2]
    for p in parts:
        assert {f.sa.key for f in p.flows} == {sa.key for sa in p.sas}
    assert len(native.split(sc.spec, 8)) == 5  # never more processes than SAs


def test_cbc_is_refused_before_anything_is_sent():
    sc = scenario.generate(2, TR, GW, alg="aes-cbc-hmac-sha256")
    with pytest.raises(ConfigError, match="AES-GCM only"):
        native.job_bytes(sc.spec.sas, [], {})


@pytest.mark.parametrize(
    "cut, msg",
    [(4, "byte 0: .*magic|truncated at byte 0"), (8, "truncated at byte 8 \\(SA count\\)"),
     (30, "truncated at byte \\d+ \\(key\\)"), (-3, "truncated at byte \\d+ \\(payload\\)")],
)  # fmt: skip
def test_a_bad_job_file_is_one_line_naming_the_byte(tmp_path, cut, msg):
    sc = scenario.generate(1, TR, GW)
    t = template.build_all(sc.spec.flows)
    data = native.job_bytes(sc.spec.sas, t, {})
    job = tmp_path / "job.bin"
    job.write_bytes(data[:cut])
    r = subprocess.run([str(native.gen_binary(asan=True)), "-i", "lo", str(job)],
                       capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 2 and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and re.search(msg, lines[0]), r.stderr


def test_an_unknown_namespace_is_one_line_naming_it(tmp_path):
    sc = scenario.generate(1, TR, GW)
    job = tmp_path / "job.bin"
    job.write_bytes(native.job_bytes(sc.spec.sas, template.build_all(sc.spec.flows), {}))
    r = subprocess.run([str(native.gen_binary(asan=True)), "-N", "spdt-none-x", "-i", "lo",
                        str(job)], capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().splitlines() == ["espgen: -N spdt-none-x: No such file or directory"], (
        r.stderr
    )


# ---------------------------------------------------------------- keepalives in a run


class Owner:
    """What a run gives its senders: its marker in their environment, their PIDs recorded."""

    def __init__(self, marker: str):
        self.spawn_env = run_env(marker)
        self.recorded: list[tuple[int, str, str]] = []

    def record_process(self, pid: int, match: str, what: str) -> None:
        self.recorded.append((pid, match, what))


def _native(lab: TrafficLab, spec, work: Path, pacing: Pacing, **kw) -> NativeRun:
    run = NativeRun(spec, work, lab.tr_ns, pacing, asan=True, **kw)
    lab.runs.append(run)  # type: ignore[arg-type]  # down() kills what is left
    run.start()
    lab.pids += [p.pid for p in run.procs]
    return run


def test_native_keepalives_hold_every_policy_with_the_run_contract(traffic_lab, tmp_path):
    """espgen paced as keepalives: every policy held, the rounds the settle awaits, per
    gateway counts, PIDs recorded and marked, every packet accepted, a decrypted sample."""
    tick_ms = 50
    lab = traffic_lab("netkey", tick_ms=tick_ms, flow_idle_ticks=20)
    sc = scenario.generate(N, TR, GW)
    lab.install(sc)
    before = lab.esp()
    owner = Owner(str(tmp_path))
    pcap = tmp_path / "sample.pcap"
    run = _native(lab, sc.spec, tmp_path / "traffic", Pacing.keepalive(N, 5, tick_ms),
                  pcap=pcap, owner=owner, report_every=0.2)  # fmt: skip
    assert [pid for pid, _, what in owner.recorded if what == "traffic"] == [
        p.pid for p in run.procs]  # fmt: skip
    assert all(has_env(p.pid, run_marker(tmp_path)) for p in run.procs)
    until(lambda: lab.admin.stats()["flows"]["open"] == N, f"{N} flows", 60, alive=run.running)
    first = until(run.stats, "a report", 60)
    until(lambda: run.stats().rounds >= first.rounds + 2, "two whole rounds", 120,  # type: ignore[union-attr]
          alive=run.running)  # fmt: skip
    final = run.stop()
    assert final.sender == "native" and final.mode == "keepalive" and final.state == "done"
    assert final.errors == 0 and final.rounds >= 2 and final.per_dst == {GW: final.sent}
    assert final.rounds == final.sent // N  # one proc: its rounds are whole passes
    moved = lab.wait_esp(final.sent, before)
    assert moved == {"ok": final.sent}, moved  # every packet accepted, nothing dropped
    pkts = rdpcap(str(pcap))  # the frames sent, scapy-decrypted in stop() already
    assert len(pkts) > 0 and all(p[IP].proto == 50 for p in pkts)
    seq = load_seq_state(tmp_path / "traffic" / "seq.json")
    assert set(seq) == {sa.key for sa in sc.spec.sas}
    assert sum(seq.values()) == final.sent  # one flow per SA from 1: numbers are packets


def test_native_and_python_senders_continue_each_others_numbers(traffic_lab, tmp_path):
    """A killed espgen leaves leased numbers in seq.json; Python and native senders that
    follow in the same folder continue above them: netkeyd sees no replay."""
    lab = traffic_lab("netkey")
    sc = scenario.generate(N, TR, GW)
    lab.install(sc)
    work = tmp_path / "traffic"
    before = lab.esp()
    first = _native(lab, sc.spec, work, Pacing("rate", rate=2000.0), report_every=0.2)
    until(lambda: (s := first.stats()) is not None and s.sent > 0 and lab.esp()["ok"] > 0,
          "the first sender's packets accepted", 60, alive=first.running)  # fmt: skip
    reported = first.stats().sent  # type: ignore[union-attr]  # at most what it sent
    first.procs[0].kill()  # no final report: the last one's lease is what is left
    first.procs[0].wait()
    with pytest.raises(InfraError, match="espgen 0 exited with -9"):
        first.stop()
    leased = load_seq_state(work / "seq.json")
    assert set(leased) == {sa.key for sa in sc.spec.sas}
    second = TrafficRun(sc.spec, work, lab.tr_ns, Pacing("count", count=500))
    lab.runs.append(second)
    second.start()
    assert second.wait(60).sent == 500
    third = _native(lab, sc.spec, work, Pacing("rate", rate=2000.0))
    until(lambda: (s := third.stats()) is not None and s.sent >= 500, "500 more sent", 60,
          alive=third.running)  # fmt: skip
    final = third.stop()
    assert all(v > leased[k] for k, v in load_seq_state(work / "seq.json").items())
    moved = lab.wait_esp(reported + 500 + final.sent, before)
    assert set(moved) == {"ok"}, moved  # no replay, no other drop


def test_the_native_sender_says_what_it_cannot_carry():
    cbc = scenario.generate(2, TR, GW, alg="aes-cbc-hmac-sha256")
    assert "AES-GCM only" in (cannot_carry(cbc.spec, "spdlab-x-traffic") or "")
    gcm = scenario.generate(2, TR, GW)
    assert cannot_carry(gcm.spec, "/proc/1/ns/net") is not None
    assert cannot_carry(gcm.spec, "spdlab-x-traffic") is None  # built by the fixture
